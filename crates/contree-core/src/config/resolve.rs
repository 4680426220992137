//! Environment + profile resolution (see the [module docs](super)).

use std::path::{Path, PathBuf};

use super::ini::IniData;
use super::{AuthKind, ContreeConfig, DEFAULT_IAM_URL, Secret};
use crate::url::ApiUrl;
use crate::{Error, Result};

/// Appended to "no token" errors.
pub(super) const HOW_TO_CONFIGURE: &str = "set CONTREE_TOKEN (or NEBIUS_API_KEY) and, for the public IAM endpoint, \
CONTREE_PROJECT (or NEBIUS_PROJECT_ID); for a self-hosted server also set CONTREE_URL; \
or run `contree auth` to save a profile";

const TOKEN_VARS: [&str; 2] = ["CONTREE_TOKEN", "NEBIUS_API_KEY"];
const URL_VARS: [&str; 2] = ["CONTREE_URL", "CONTREE_BASE_URL"];
const PROJECT_VARS: [&str; 3] = ["CONTREE_PROJECT", "NEBIUS_PROJECT_ID", "NEBIUS_AI_PROJECT"];

/// Whether the process environment or the profile files hold a token.
///
/// Examples use it to fall back to a local server when nothing is configured. A profile
/// file that cannot be read counts as configured, so that [`ContreeConfig::from_env`] gets to
/// report what is wrong with it.
pub fn credentials_configured() -> bool {
    has_credentials(&super::process_env)
}

/// A variable's value, trimmed; empty counts as unset.
fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    env(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// The first set variable among `names`, with its name (for messages).
fn first_var(env: &dyn Fn(&str) -> Option<String>, names: &[&'static str]) -> Option<(String, &'static str)> {
    names.iter().find_map(|&n| var(env, n).map(|v| (v, n)))
}

/// `$CONTREE_HOME` → `$XDG_CONFIG_HOME/contree` → `$HOME/.config/contree`.
pub(super) fn config_home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let home = || var(env, "HOME").or_else(|| var(env, "USERPROFILE")).map(PathBuf::from);
    if let Some(dir) = var(env, "CONTREE_HOME") {
        return Some(expand_tilde(&dir, home()));
    }
    if let Some(xdg) = var(env, "XDG_CONFIG_HOME") {
        return Some(PathBuf::from(xdg).join("contree"));
    }
    home().map(|h| h.join(".config").join("contree"))
}

fn expand_tilde(path: &str, home: Option<PathBuf>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(""), Some(home)) => home,
        (Some(rest), Some(home)) if rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(path),
    }
}

/// `cli.ini` with `auth.ini` laid over it, key by key.
fn load_files(home: &Path) -> Result<IniData> {
    let mut data = IniData::load(&home.join("cli.ini"))?;
    data.merge(IniData::load(&home.join("auth.ini"))?);
    Ok(data)
}

/// The profile to use, and whether the caller named it in the call.
///
/// A missing profile named by `CONTREE_PROFILE` is not an error by itself (as with the
/// official tools): the environment may still hold a token. The "no token" error names it.
fn profile_name(env: &dyn Fn(&str) -> Option<String>, explicit: Option<&str>, files: &IniData) -> (String, bool) {
    if let Some(name) = explicit.map(str::trim).filter(|n| !n.is_empty()) {
        return (name.to_string(), true);
    }
    if let Some(name) = var(env, "CONTREE_PROFILE") {
        return (name, false);
    }
    let from_file = files.default_value("profile").map(str::trim).filter(|n| !n.is_empty());
    (from_file.unwrap_or("default").to_string(), false)
}

pub(super) fn has_credentials(env: &dyn Fn(&str) -> Option<String>) -> bool {
    if first_var(env, &TOKEN_VARS).is_some() {
        return true;
    }
    let Some(home) = config_home(env) else {
        return false;
    };
    let Ok(files) = load_files(&home) else {
        return true;
    };
    let (name, _) = profile_name(env, None, &files);
    let section = format!("profile:{name}");
    files.value(&section, "token").is_some_and(|t| !t.trim().is_empty())
}

pub(super) fn resolve(env: &dyn Fn(&str) -> Option<String>, explicit: Option<&str>) -> Result<ContreeConfig> {
    let home = config_home(env);
    let files = match &home {
        Some(home) => load_files(home)?,
        None => IniData::default(),
    };
    let (name, named) = profile_name(env, explicit, &files);
    let section = format!("profile:{name}");
    let found = files.has_section(&section);
    let where_ = match &home {
        Some(h) => format!("{}/auth.ini", h.display()),
        None => "auth.ini (no config directory: HOME is not set)".to_string(),
    };
    if named && !found {
        return Err(Error::config(format!("profile `{name}` not found in {where_} (nor in cli.ini beside it)")));
    }
    let profile_value =
        |key: &str| files.value(&section, key).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);

    let token = first_var(env, &TOKEN_VARS).map(|(v, _)| v).or_else(|| profile_value("token")).ok_or_else(|| {
        let looked = if found {
            format!("profile `{name}` in {where_} has no token")
        } else {
            format!("no profile `{name}` in {where_}")
        };
        Error::config(format!("no Contree credentials found ({looked}); {HOW_TO_CONFIGURE}"))
    })?;

    let url = match first_var(env, &URL_VARS) {
        Some((url, var_name)) => Some((url, var_name.to_string())),
        None => profile_value("url").map(|u| (u, format!("profile `{name}`"))),
    };
    let project = first_var(env, &PROJECT_VARS).map(|(v, _)| v).or_else(|| profile_value("project"));

    let auth_kind = match profile_value("type") {
        Some(kind) if kind.eq_ignore_ascii_case("iam") => AuthKind::Iam,
        Some(kind) if kind.eq_ignore_ascii_case("jwt") => AuthKind::Jwt,
        Some(kind) => {
            return Err(Error::config(format!(
                "profile `{name}` has unknown type `{}` (expected `iam` or `jwt`)",
                kind.escape_debug()
            )));
        }
        // A project only makes sense with IAM.
        None if project.is_some() => AuthKind::Iam,
        // configparser fallback of the official tools for a profile without `type`.
        None if found => AuthKind::Jwt,
        // Environment only: a URL means a self-hosted server; none means the public endpoint.
        None if url.is_some() => AuthKind::Jwt,
        None => AuthKind::Iam,
    };

    let base_url = match (url, auth_kind) {
        (Some((url, origin)), _) => {
            let url = url.trim_end_matches('/').to_string();
            ApiUrl::parse(&url)
                .map_err(|e| Error::config(format!("invalid Contree URL from {origin}: {}", e.message())))?;
            url
        }
        (None, AuthKind::Iam) => DEFAULT_IAM_URL.to_string(),
        (None, AuthKind::Jwt) => {
            return Err(Error::config(format!(
                "profile `{name}` has no URL (jwt auth needs one): set `url` in the profile or CONTREE_URL"
            )));
        }
    };

    Ok(ContreeConfig {
        base_url,
        token: Some(Secret::from(token)),
        project,
        auth_kind,
        profile: found.then_some(name),
        ..ContreeConfig::default()
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::fs;

    use super::*;

    /// A fake environment plus a temporary config home.
    struct Fixture {
        dir: tempfile::TempDir,
        vars: HashMap<String, String>,
    }

    impl Fixture {
        /// `CONTREE_HOME` points at an empty temporary directory.
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut vars = HashMap::new();
            vars.insert("CONTREE_HOME".to_string(), dir.path().display().to_string());
            Fixture { dir, vars }
        }

        fn set(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.to_string(), v.to_string());
            self
        }

        fn unset(mut self, k: &str) -> Self {
            self.vars.remove(k);
            self
        }

        fn file(self, name: &str, text: &str) -> Self {
            self.file_in(Path::new(""), name, text)
        }

        fn file_in(self, sub: &Path, name: &str, text: &str) -> Self {
            let dir = self.dir.path().join(sub);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join(name), text).unwrap();
            self
        }

        fn env(&self) -> impl Fn(&str) -> Option<String> + '_ {
            |k| self.vars.get(k).cloned()
        }

        fn resolve(&self, profile: Option<&str>) -> Result<ContreeConfig> {
            ContreeConfig::resolve(&self.env(), profile)
        }

        fn ok(&self) -> ContreeConfig {
            self.resolve(None).unwrap_or_else(|e| panic!("{e}"))
        }

        fn err(&self, profile: Option<&str>) -> Error {
            let e = self.resolve(profile).expect_err("resolution should fail");
            assert!(e.is_config(), "{e:?}");
            e
        }
    }

    const PROFILES: &str = "[DEFAULT]\nprofile = second\n\n\
        [profile:default]\ntoken = tok-default\nurl = https://default.example/\ntype = jwt\n\n\
        [profile:second]\ntoken = tok-second\nurl = https://second.example\ntype = jwt\n\n\
        [profile:third]\ntoken = tok-third\nurl = https://third.example\ntype = jwt\n\n\
        [profile:iam]\ntoken = tok-iam\ntype = iam\nproject = project-e0\n";

    #[test]
    fn env_only_self_hosted() {
        let c = Fixture::new().set("CONTREE_TOKEN", "tok").set("CONTREE_URL", "http://127.0.0.1:8080/").ok();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok"));
        assert_eq!(c.base_url, "http://127.0.0.1:8080");
        assert_eq!(c.auth_kind, AuthKind::Jwt);
        assert_eq!(c.project, None);
        assert_eq!(c.profile, None);
    }

    #[test]
    fn env_only_token_means_the_public_endpoint() {
        let c = Fixture::new().set("CONTREE_TOKEN", " tok\n").ok();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok"), "surrounding whitespace is trimmed");
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        assert_eq!(c.auth_kind, AuthKind::Iam);
    }

    #[test]
    fn nebius_variables_alone() {
        let c = Fixture::new().set("NEBIUS_API_KEY", "v1.key").set("NEBIUS_PROJECT_ID", "project-e0").ok();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("v1.key"));
        assert_eq!(c.project.as_deref(), Some("project-e0"));
        assert_eq!(c.auth_kind, AuthKind::Iam);
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        assert_eq!(
            c.auth_headers().unwrap(),
            vec![("authorization", "Bearer v1.key".to_string()), ("project", "project-e0".to_string())]
        );
        let c = Fixture::new().set("NEBIUS_API_KEY", "k").set("NEBIUS_AI_PROJECT", "p2").ok();
        assert_eq!(c.project.as_deref(), Some("p2"));
    }

    #[test]
    fn contree_variables_beat_nebius_ones() {
        let c = Fixture::new()
            .set("CONTREE_TOKEN", "a")
            .set("NEBIUS_API_KEY", "b")
            .set("CONTREE_PROJECT", "pa")
            .set("NEBIUS_PROJECT_ID", "pb")
            .set("NEBIUS_AI_PROJECT", "pc")
            .set("CONTREE_URL", "https://a.example")
            .set("CONTREE_BASE_URL", "https://b.example")
            .ok();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("a"));
        assert_eq!(c.project.as_deref(), Some("pa"));
        assert_eq!(c.base_url, "https://a.example");
        let c = Fixture::new()
            .set("CONTREE_TOKEN", "a")
            .set("CONTREE_BASE_URL", "https://b.example")
            .set("CONTREE_URL", "")
            .ok();
        assert_eq!(c.base_url, "https://b.example", "empty counts as unset");
    }

    #[test]
    fn profile_selection_order() {
        let f = Fixture::new().file("auth.ini", PROFILES);
        // [DEFAULT] profile
        let c = f.ok();
        assert_eq!(c.profile.as_deref(), Some("second"));
        assert_eq!(c.base_url, "https://second.example");
        // CONTREE_PROFILE beats [DEFAULT]
        let f = f.set("CONTREE_PROFILE", "third");
        assert_eq!(f.ok().profile.as_deref(), Some("third"));
        // explicit beats CONTREE_PROFILE
        let c = f.resolve(Some("default")).unwrap();
        assert_eq!(c.profile.as_deref(), Some("default"));
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok-default"));
        assert_eq!(c.base_url, "https://default.example", "trailing slash stripped");
        // fallback "default"
        let f = Fixture::new().file("auth.ini", &PROFILES.replace("profile = second", ""));
        assert_eq!(f.ok().profile.as_deref(), Some("default"));
    }

    #[test]
    fn iam_profile() {
        let c = Fixture::new().file("auth.ini", PROFILES).resolve(Some("iam")).unwrap();
        assert_eq!(c.auth_kind, AuthKind::Iam);
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        assert_eq!(c.project.as_deref(), Some("project-e0"));
    }

    #[test]
    fn env_overrides_the_profile_per_value() {
        let c = Fixture::new().file("auth.ini", PROFILES).set("CONTREE_TOKEN", "env-tok").ok();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("env-tok"));
        assert_eq!(c.base_url, "https://second.example", "url still from the profile");
        assert_eq!(c.auth_kind, AuthKind::Jwt);
        assert_eq!(c.profile.as_deref(), Some("second"));
    }

    #[test]
    fn missing_named_profile_is_an_error() {
        let f = Fixture::new().file("auth.ini", PROFILES);
        let e = f.err(Some("nope"));
        assert!(e.to_string().contains("`nope`"), "{e}");
        // Through CONTREE_PROFILE it is reported only when nothing else provides a token.
        let f = Fixture::new().file("auth.ini", PROFILES).set("CONTREE_PROFILE", "gone");
        let e = f.err(None);
        assert!(e.to_string().contains("no profile `gone`"), "{e}");
        let c = f.set("CONTREE_TOKEN", "t").ok();
        assert_eq!((c.profile, c.base_url.as_str()), (None, DEFAULT_IAM_URL));
    }

    #[test]
    fn contree_home_beats_xdg_and_home() {
        let xdg = tempfile::tempdir().unwrap();
        fs::create_dir_all(xdg.path().join("contree")).unwrap();
        fs::write(
            xdg.path().join("contree/auth.ini"),
            "[profile:default]\ntoken = from-xdg\nurl = https://xdg.example\n",
        )
        .unwrap();
        let f = Fixture::new()
            .file("auth.ini", "[profile:default]\ntoken = from-contree-home\nurl = https://home.example\n")
            .set("XDG_CONFIG_HOME", &xdg.path().display().to_string());
        assert_eq!(f.ok().token.as_ref().map(Secret::expose), Some("from-contree-home"));
        // Without CONTREE_HOME, XDG_CONFIG_HOME/contree is used.
        let f = f.unset("CONTREE_HOME");
        assert_eq!(f.ok().token.as_ref().map(Secret::expose), Some("from-xdg"));
    }

    #[test]
    fn home_dot_config_is_the_last_fallback() {
        let f = Fixture::new().file_in(
            Path::new(".config/contree"),
            "auth.ini",
            "[profile:default]\ntoken = from-home\nurl = https://h.example\n",
        );
        let home = f.dir.path().display().to_string();
        let f = f.unset("CONTREE_HOME").set("HOME", &home);
        assert_eq!(f.ok().token.as_ref().map(Secret::expose), Some("from-home"));
        // CONTREE_HOME with a tilde is expanded against HOME.
        let f = f.set("CONTREE_HOME", "~/.config/contree");
        assert_eq!(f.ok().token.as_ref().map(Secret::expose), Some("from-home"));
    }

    #[test]
    fn no_home_at_all_is_fine_with_env() {
        let vars = |k: &str| (k == "CONTREE_TOKEN").then(|| "t".to_string());
        assert_eq!(config_home(&vars), None);
        let c = ContreeConfig::resolve(&vars, None).unwrap();
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        let e = ContreeConfig::resolve(&|_: &str| None, None).unwrap_err();
        assert!(e.is_config());
    }

    #[test]
    fn auth_ini_wins_over_cli_ini_per_key() {
        let c = Fixture::new()
            .file("cli.ini", "[DEFAULT]\nprofile = p\n[profile:p]\nurl = https://cli.example\ntype = jwt\ntoken = cli-tok\n[cli]\neditor = vi\n")
            .file("auth.ini", "[profile:p]\ntoken = auth-tok\n")
            .ok();
        assert_eq!(c.profile.as_deref(), Some("p"), "[DEFAULT] from cli.ini");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("auth-tok"));
        assert_eq!(c.base_url, "https://cli.example");
        assert_eq!(c.auth_kind, AuthKind::Jwt);
    }

    #[test]
    fn missing_type_is_jwt_unless_a_project_is_set() {
        let f = Fixture::new().file("auth.ini", "[profile:default]\ntoken = t\nurl = https://x.example\n");
        assert_eq!(f.ok().auth_kind, AuthKind::Jwt);
        assert_eq!(f.ok().auth_headers().unwrap().len(), 1);
        let f = Fixture::new().file("auth.ini", "[profile:default]\ntoken = t\nproject = p\n");
        let c = f.ok();
        assert_eq!(c.auth_kind, AuthKind::Iam);
        assert_eq!(c.base_url, DEFAULT_IAM_URL);
        // A project from the environment turns a typeless profile into IAM too.
        let f = Fixture::new()
            .file("auth.ini", "[profile:default]\ntoken = t\nurl = https://x.example\n")
            .set("NEBIUS_PROJECT_ID", "p");
        assert_eq!(f.ok().auth_kind, AuthKind::Iam);
        assert_eq!(f.ok().base_url, "https://x.example");
    }

    #[test]
    fn type_is_case_insensitive_and_validated() {
        let f = Fixture::new().file("auth.ini", "[profile:default]\ntoken = t\ntype = IAM ; comment\n");
        assert_eq!(f.ok().auth_kind, AuthKind::Iam);
        let f = Fixture::new().file("auth.ini", "[profile:default]\ntoken = t\ntype = oauth\n");
        assert!(f.err(None).to_string().contains("oauth"));
    }

    #[test]
    fn jwt_without_url_is_an_error() {
        let f = Fixture::new().file("auth.ini", "[profile:default]\ntoken = t\ntype = jwt\n");
        let e = f.err(None);
        assert!(e.to_string().contains("has no URL"), "{e}");
        // … unless the environment provides one.
        let f = f.set("CONTREE_URL", "https://x.example/");
        assert_eq!(f.ok().base_url, "https://x.example");
    }

    #[test]
    fn invalid_url_is_a_config_error() {
        let f = Fixture::new().set("CONTREE_TOKEN", "t").set("CONTREE_URL", "ftp://x.example");
        let e = f.err(None);
        assert!(e.to_string().contains("CONTREE_URL"), "{e}");
    }

    #[test]
    fn no_token_explains_how_to_configure() {
        let e = Fixture::new().err(None);
        let msg = e.to_string();
        for needle in ["CONTREE_TOKEN", "NEBIUS_API_KEY", "contree auth", "`default`"] {
            assert!(msg.contains(needle), "{needle} missing in: {msg}");
        }
        let e = Fixture::new().file("auth.ini", "[profile:default]\nurl = https://x\ntoken =\n").err(None);
        assert!(e.to_string().contains("has no token"), "{e}");
    }

    #[test]
    fn parse_errors_name_the_file_never_the_token() {
        let f = Fixture::new().file("auth.ini", "[profile:default\ntoken = sekrit-token\n");
        let e = f.err(None);
        let msg = format!("{e} {e:?}");
        assert!(msg.contains("auth.ini"), "{msg}");
        assert!(!msg.contains("sekrit-token"), "{msg}");
        assert!(has_credentials(&f.env()), "a broken file must be reported, not skipped");
    }

    #[test]
    fn unreadable_file_is_a_config_error() {
        let f = Fixture::new();
        fs::create_dir(f.dir.path().join("auth.ini")).unwrap();
        let e = f.set("CONTREE_TOKEN", "t").err(None);
        assert!(e.to_string().contains("auth.ini"), "{e}");
    }

    #[test]
    fn resolved_config_never_shows_the_token() {
        let c = Fixture::new()
            .file("auth.ini", "[profile:default]\ntoken = very-secret-value\nurl = https://x.example\n")
            .ok();
        assert!(!format!("{c:?}").contains("very-secret-value"));
        assert!(!format!("{c:#?}").contains("very-secret-value"));
    }

    #[test]
    fn credentials_detection() {
        assert!(!has_credentials(&Fixture::new().env()));
        assert!(has_credentials(&Fixture::new().set("NEBIUS_API_KEY", "k").env()));
        assert!(!has_credentials(&Fixture::new().set("CONTREE_TOKEN", "  ").env()));
        let f = Fixture::new().file("auth.ini", PROFILES);
        assert!(has_credentials(&f.env()));
        let f = Fixture::new().file("auth.ini", "[profile:other]\ntoken = t\n");
        assert!(!has_credentials(&f.env()));
        assert!(has_credentials(&f.set("CONTREE_PROFILE", "other").env()));
    }
}
