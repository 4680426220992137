"""Drives a Contree server with the official Python clients from PyPI.

Run by tests/python_clients.rs against an embedded contree-local, in a venv holding
tests/python/requirements.txt: `contree-sdk` (the high-level SDK, sync and async) and
`contree-client` (the low-level client generated from the OpenAPI spec).

Needs CONTREE_URL and CONTREE_TOKEN. Each check asserts real results and prints
`ok <name>` or `FAIL <name>` with its traceback; the last line is `N passed, M failed`,
and the exit code is non-zero when any check failed. Arguments, if any, name the checks
to run (all by default).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path

from contree_client import ClosableStreamRepr, ConflictError, GoneError, decode_chunk, decode_stream
from contree_client.sync import ContreeClient
from contree_sdk import Contree, ContreeSync
from contree_sdk.auth import JWTAuth
from contree_sdk.config import ContreeConfig
from contree_sdk.sdk.exceptions import NotFoundError
from contree_sdk.utils.models.file import UploadFileSpec

URL = os.environ["CONTREE_URL"]
TOKEN = os.environ["CONTREE_TOKEN"]
BASE_TAG = "contree-local/base:latest"
# Tags made here carry a per-run suffix, so a rerun against the same server starts clean.
RUN_ID = uuid.uuid4().hex[:8]


def sdk_config() -> ContreeConfig:
    # JWTAuth: a plain bearer token and URL (IAMAuth would also send a Nebius project).
    return ContreeConfig(auth=JWTAuth(token=TOKEN, base_url=URL), operation_timeout=120.0)


SDK = ContreeSync(sdk_config())
LOW = ContreeClient(TOKEN, base_url=URL, timeout=60.0)
BASE_UUID = LOW.inspect_find_image_by_tag(BASE_TAG)
BASE = SDK.images.use(BASE_UUID, strict=True)


def eq(actual, expected, what: str = "") -> None:
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


# --- contree-sdk (high level) ----------------------------------------------------------------


def check_sdk_run_wait_stdout() -> None:
    done = BASE.run(shell="echo hello; echo oops >&2; exit 3").wait()
    eq(done.stdout, "hello\n", "stdout")
    eq(done.stderr, "oops\n", "stderr")
    eq(done.exit_code, 3, "exit code")
    eq(done.uuid, None, "a disposable run (the SDK's default) has no result image")
    argv = BASE.run("/bin/echo", args=["a b", "c"]).wait()
    eq(argv.stdout, "a b c\n", "argv run")
    piped = BASE.run("cat", stdin="from stdin\n").wait()
    eq(piped.stdout, "from stdin\n", "stdin")
    env = BASE.run(shell="echo $GREETING", env={"GREETING": "hi there"}).wait()
    eq(env.stdout, "hi there\n", "env")
    cwd = BASE.run(shell="pwd", cwd="/tmp/work").wait()
    eq(cwd.stdout, "/tmp/work\n", "cwd")
    raw = BASE.run(shell="printf '\\377\\000x'", stdout=bytes).wait()
    eq(raw.stdout, b"\xff\x00x", "binary stdout")
    kept = BASE.run(shell="echo kept > /kept.txt", disposable=False).wait()
    if kept.uuid is None or str(kept.uuid) == BASE_UUID:
        raise AssertionError(f"a run that wrote a file has a new image, got {kept.uuid}")
    eq(kept.read("/kept.txt"), b"kept\n", "file in the result image")


def check_sdk_async_run() -> None:
    async def main() -> None:
        client = Contree(sdk_config())
        base = await client.images.use(BASE_UUID)
        done = await base.run(shell="echo async; exit 5")
        eq(done.stdout, "async\n", "async stdout")
        eq(done.exit_code, 5, "async exit code")
        kept = await base.run(shell="echo a > /async.txt", disposable=False)
        eq(await kept.read("/async.txt"), b"a\n", "async read")

    asyncio.run(main())


def check_sdk_session_chain() -> None:
    session = BASE.session()
    session.run(shell="mkdir -p /work && echo 1 > /work/n", disposable=False).wait()
    first = session.uuid
    session.run(shell="echo 2 >> /work/n", disposable=False).wait()
    if session.uuid == first:
        raise AssertionError("the session did not move to the second run's image")
    session.run(shell="cat /work/n; echo $((1 + 2))", disposable=False).wait()
    eq(session.stdout, "1\n2\n3\n", "the chain sees every earlier run")
    eq(session.read("/work/n"), b"1\n2\n", "read from the session's image")
    try:
        BASE.read("/work/n")
    except NotFoundError:
        pass
    else:
        raise AssertionError("the base image changed")


def check_sdk_branching() -> None:
    root = BASE.run(shell="echo root > /f", disposable=False).wait()
    a = root.run(shell="echo a >> /f", disposable=False).wait()
    b = root.run(shell="echo b >> /f", disposable=False).wait()
    eq(len({root.uuid, a.uuid, b.uuid}), 3, "three distinct images")
    eq(a.read("/f"), b"root\na\n", "branch a")
    eq(b.read("/f"), b"root\nb\n", "branch b")
    eq(root.read("/f"), b"root\n", "the parent is untouched")
    # The same prepared run awaited twice gives two branches.
    prepared = root.run(shell="echo $RANDOM$RANDOM > /r", disposable=False)
    one, two = prepared.wait(), prepared.wait()
    if one.uuid == two.uuid:
        raise AssertionError("executing a prepared run twice made one image")


def check_sdk_popen_communicate() -> None:
    proc = BASE.popen(["cat"])
    out, err = proc.communicate(input="piped\nlines\n")
    eq((out, err), ("piped\nlines\n", ""), "communicate")
    eq(proc.returncode, 0, "returncode")
    shell = BASE.popen("echo $((6 * 7)); exit 4", shell=True)
    shell.wait()
    eq(shell.returncode, 4, "shell returncode")
    eq(shell.stdout, "42\n", "shell stdout")
    checked = BASE.popen(["sh", "-c", "echo bad >&2; exit 9"], check=True)
    try:
        checked.wait()
    except subprocess.CalledProcessError as e:
        eq(e.returncode, 9, "CalledProcessError.returncode")
        eq(e.stderr, "bad\n", "CalledProcessError.stderr")
    else:
        raise AssertionError("check=True did not raise for exit 9")


def files_image():
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "local.txt"
        local.write_text("from a local file\n")
        return BASE.apply_files(
            {
                "/app/data.txt": b"payload\n",
                "/app/run.sh": UploadFileSpec(source=b"#!/bin/sh\necho ran \"$@\"\n", mode=0o755),
                "/app/sub/local.txt": local,
            }
        )


def check_sdk_apply_files_read() -> None:
    image = files_image()
    eq(image.read("/app/data.txt"), b"payload\n", "bytes source")
    eq(image.read("/app/sub/local.txt"), b"from a local file\n", "path source")
    eq(image.run("/app/run.sh", args=["x"]).wait().stdout, "ran x\n", "an executable placed with mode 0755")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.txt"
        image.download("/app/data.txt", target)
        eq(target.read_bytes(), b"payload\n", "download")


def check_sdk_ls() -> None:
    image = files_image()
    entries = {e.name: e for e in image.ls("/app")}
    eq(sorted(entries), ["data.txt", "run.sh", "sub"], "ls /app")
    eq(entries["run.sh"].mode & 0o777, 0o755, "run.sh mode")
    eq(entries["data.txt"].size, len(b"payload\n"), "data.txt size")
    eq((entries["data.txt"].is_file, entries["sub"].is_dir), (True, True), "kinds")
    eq(entries["data.txt"].read(), b"payload\n", "read through the entry")
    nested = entries["sub"].ls()
    eq([e.name for e in nested], ["local.txt"], "ls of a directory entry")
    root = {e.name for e in image.ls("/")}
    if not {"app", "bin", "etc"} <= root:
        raise AssertionError(f"ls / lacks app, bin or etc: {sorted(root)}")


def check_sdk_tag_untag() -> None:
    tag = f"pycompat/tagged:{RUN_ID}"
    image = BASE.run(shell="echo t > /t", disposable=False).wait()
    tagged = image.tag_as(tag)
    eq(tagged.tag, tag, "tag_as")
    eq(LOW.inspect_find_image_by_tag(tag), str(image.uuid), "the tag resolves to the image")
    by_tag = SDK.images.use(image.uuid, strict=True)
    eq(by_tag.tag, tag, "the image carries its tag")
    listed = {str(i.uuid): i.tag for i in SDK.images(tagged=True, number=1000)}
    eq(listed.get(str(image.uuid)), tag, "tagged listing")
    # A new tag on another image moves nothing else; untag removes it.
    untagged = tagged.untag()
    eq(untagged.tag, None, "untag")
    listed = {str(i.uuid) for i in SDK.images(tagged=True, number=1000)}
    if str(image.uuid) in listed:
        raise AssertionError("an untagged image is still listed as tagged")
    try:
        LOW.inspect_find_image_by_tag(tag)
    except Exception as e:  # the low-level client's NotFoundError
        eq(type(e).__name__, "NotFoundError", "resolving a removed tag")
    else:
        raise AssertionError("a removed tag still resolves")


def check_sdk_image_listing() -> None:
    made = [BASE.run(shell=f"echo {i} > /listed", disposable=False).wait() for i in range(3)]
    # The default `until` is the listing's start as a naive local time: new images are in.
    everything = {str(i.uuid) for i in SDK.images(number=None)}
    for image in made:
        if str(image.uuid) not in everything:
            raise AssertionError(f"image {image.uuid} made just now is not listed")
    if BASE_UUID not in everything:
        raise AssertionError("the base image is not listed")
    eq(len(SDK.images(number=2)), 2, "number=2")
    recent = {str(i.uuid) for i in SDK.images(since=timedelta(minutes=10), number=None)}
    if not {str(i.uuid) for i in made} <= recent:
        raise AssertionError("since=10 minutes ago lacks images made just now")
    old = {str(i.uuid) for i in SDK.images(until=timedelta(hours=1), number=None)}
    if old & {str(i.uuid) for i in made}:
        raise AssertionError("until=1 hour ago lists images made just now")
    # Newest first: the last one made comes before the first.
    order = [str(i.uuid) for i in SDK.images(number=None)]
    if order.index(str(made[2].uuid)) > order.index(str(made[0].uuid)):
        raise AssertionError("the listing is not newest first")
    iterated = {str(i.uuid) for i in SDK.images}
    if not {str(i.uuid) for i in made} <= iterated:
        raise AssertionError("iterating the images manager misses new images")


# --- contree-client (low level) --------------------------------------------------------------


def check_client_events() -> None:
    spawned = LOW.spawn_instance("echo out; echo err >&2; exit 2", BASE_UUID, shell=True)
    op = spawned.uuid
    events = list(LOW.follow_operation_events(op, timeout=60))
    types = [e.type for e in events]
    eq(types[0], "init", "first event")
    eq(types[-1], "completion", "last event")
    for wanted in ("spawn", "stdout", "stderr", "exit", "shutdown"):
        if wanted not in types:
            raise AssertionError(f"no {wanted} event in {types}")
    ids = [e.id for e in events]
    eq(ids, sorted(set(ids)), "event ids increase")
    out = b"".join(decode_chunk(e.data) for e in events if e.type == "stdout")
    err = b"".join(decode_chunk(e.data) for e in events if e.type == "stderr")
    eq((out, err), (b"out\n", b"err\n"), "streamed output")
    status = LOW.get_operation_status(op)
    eq(str(status.status), "SUCCESS", "status")
    result = status.metadata.result
    eq(result.state.exit_code, 2, "exit code in the record")
    eq(decode_stream(result.stdout), "out\n", "stdout in the record")
    # Resuming after an id replays only what follows it.
    tail = list(LOW.iter_operation_events(op, since=ids[-3]))
    eq([e.id for e in tail], ids[-2:], "since")


def check_client_stdin() -> None:
    spawned = LOW.spawn_instance(
        "/bin/cat", BASE_UUID, stdin=ClosableStreamRepr(value="first\n", close=False), timeout=60
    )
    op = spawned.uuid
    LOW.operation_subprocess_stdin(op, 1, "second\n", close=False)
    LOW.operation_subprocess_stdin(op, 1, "dGhpcmQK", encoding="base64", close=True)
    done = LOW.wait_operation(op, timeout=60)
    eq(str(done.status), "SUCCESS", "status")
    eq(decode_stream(done.metadata.result.stdout), "first\nsecond\nthird\n", "every stdin write arrived in order")
    # Once the instance has ended there is nothing to write to: 410, not a silent drop.
    try:
        LOW.operation_subprocess_stdin(op, 1, "late\n")
    except GoneError:
        pass
    else:
        raise AssertionError("stdin after the end was accepted")
    # While it still runs, a closed stdin refuses more writes with 409.
    running = LOW.spawn_instance(
        "cat; exec sleep 60", BASE_UUID, shell=True, stdin=ClosableStreamRepr(value="", close=False), timeout=120
    ).uuid
    LOW.operation_subprocess_stdin(running, 1, "only\n", close=True)
    try:
        LOW.operation_subprocess_stdin(running, 1, "more\n")
    except ConflictError:
        pass
    else:
        raise AssertionError("stdin after EOF was accepted")
    finally:
        LOW.cancel_operation(running)
    eq(str(LOW.wait_operation(running, timeout=30).status), "CANCELLED", "cleanup")


def check_client_cancel() -> None:
    spawned = LOW.spawn_instance("sleep", BASE_UUID, args=["60"], timeout=120)
    op = spawned.uuid
    deadline = time.monotonic() + 30
    while str(LOW.get_operation_status(op).status) != "EXECUTING":
        if time.monotonic() > deadline:
            raise AssertionError("the run never started")
        time.sleep(0.05)
    started = time.monotonic()
    LOW.cancel_operation(op)
    done = LOW.wait_operation(op, timeout=30)
    eq(str(done.status), "CANCELLED", "status after cancel")
    if time.monotonic() - started > 20:
        raise AssertionError("cancelling took as long as the command")
    eq(done.result_image_uuid, None, "a cancelled run has no result image")
    try:
        LOW.cancel_operation(op)
    except ConflictError:
        pass
    else:
        raise AssertionError("cancelling an ended operation did not answer 409")


def check_client_preserve_cwd() -> None:
    spawned = LOW.spawn_instance("true", BASE_UUID, cwd="/srv/app", preserve_cwd=True, disposable=False)
    done = LOW.wait_operation(spawned.uuid, timeout=60)
    image = done.result_image_uuid
    if image is None or str(image) == BASE_UUID:
        raise AssertionError(f"preserve_cwd made no new image: {image}")
    pwd = LOW.wait_operation(LOW.spawn_instance("pwd", str(image)).uuid, timeout=60)
    eq(decode_stream(pwd.metadata.result.stdout), "/srv/app\n", "the saved working directory")


CHECKS = {name[len("check_") :]: fn for name, fn in globals().items() if name.startswith("check_")}


def main(argv: list[str]) -> int:
    names = argv or list(CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        print(f"unknown checks: {unknown}; known: {sorted(CHECKS)}", file=sys.stderr)
        return 2
    passed = failed = 0
    for name in names:
        try:
            CHECKS[name]()
        except Exception:
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print(f"ok {name}", flush=True)
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
