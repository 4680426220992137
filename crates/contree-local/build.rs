//! Builds `contree-init` (init/init.c), the small static program every sandbox starts
//! from. The server embeds it (`include_bytes!`) and executes it from a sealed memfd, so
//! it works the same in the `contree-local` binary and embedded in any test or example.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=init/init.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let exe = out.join("contree-init");
    if target_os != "linux" {
        // The server only runs on Linux; elsewhere the crate compiles without an init.
        std::fs::write(&exe, b"").expect("writing a placeholder init");
        return;
    }
    let compiler = cc::Build::new().opt_level(2).get_compiler();
    let compile = |static_link: bool| {
        let mut cmd: Command = compiler.to_command();
        cmd.args(["-Wall", "-Wextra", "-Werror", "-std=gnu11"]);
        if static_link {
            cmd.arg("-static");
        }
        cmd.arg("-o").arg(&exe).arg("init/init.c");
        cmd.status()
    };
    match compile(true) {
        Ok(s) if s.success() => {}
        _ => {
            // Without a static libc (Debian: libc6-dev; Fedora: glibc-static) init links
            // dynamically; it is executed before the sandbox's root is switched, so it
            // loads the host's libc either way.
            println!("cargo:warning=contree-init: static linking failed; linking it dynamically");
            match compile(false) {
                Ok(s) if s.success() => {}
                other => panic!(
                    "compiling crates/contree-local/init/init.c failed ({other:?}): contree-local needs a C compiler and the C library headers (Debian: gcc libc6-dev)"
                ),
            }
        }
    }
}
