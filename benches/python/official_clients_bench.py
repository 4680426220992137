"""The Python side of the side-by-side client benchmark (issue 12).

Measures one official Python client (`contree-client` or `contree-sdk`, from PyPI, pinned in
benches/python/requirements.txt) against a running Contree server, usually contree-local,
and appends one JSON object per line to --out. The driver script calls it once per client,
mode and round, interleaved with the Rust bench targets; see benches/python/README.md.

    python official_clients_bench.py --url URL --token T --client contree-client \
        --mode latency --n 200 --round 1 --out results.jsonl
    python official_clients_bench.py ... --mode upload --file /path/to/fresh-1GiB --max-seconds 60
    python official_clients_bench.py --mode env          # versions, as JSON, for the report

Each process imports only the client it measures, so its peak RSS is the interpreter plus
that client (what the issue calls client peak RSS). Exit code 0 when the record was written
(errors in runs are counted in the record, not fatal), 2 for bad arguments, 1 when no record
could be written (the server unreachable, the base image missing...).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import sys
import time
from importlib import metadata
from pathlib import Path

# The built-in image of contree-local (contree_local::BASE_IMAGE_TAG).
BASE_TAG = "contree-local/base:latest"
CLIENTS = ("contree-client", "contree-sdk")
# Bound on one run's wait: a hung run counts as an error instead of stalling the benchmark.
RUN_TIMEOUT_S = 60.0


def version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def label(client: str) -> str:
    return f"{client} {version(client) or '?'}"


def rusage_cpu_s() -> float:
    # RUSAGE_SELF covers every thread: contree-sdk's sync API runs its coroutines on a
    # background event-loop thread, and that CPU is part of what the client costs.
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def peak_rss_kib() -> int:
    # Linux reports ru_maxrss in KiB. It includes the interpreter and the imports.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def proc_rchar() -> int | None:
    """Bytes this process has read through read()-like calls (files and sockets)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("rchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


def append(out: str | None, record: dict) -> None:
    line = json.dumps(record, separators=(",", ":"))
    if out is None:
        print(line, flush=True)
        return
    # One write of one line in append mode: lines from interleaved processes don't mix.
    with open(out, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# --- latency -----------------------------------------------------------------------------------


class ContreeClientRunner:
    """contree-client's idiomatic path: spawn_instance, then wait_operation.

    wait_operation (follow_events=None, the default) reads the status once to learn the
    operation's kind, follows the SSE event stream to `completion`, then reads the final status:
    POST + GET + GET(events) + GET per run.
    """

    path = "spawn_instance + wait_operation (GET status, SSE events to completion, GET status)"

    def __init__(self, url: str, token: str) -> None:
        from contree_client.sync import BACKEND, ContreeClient

        self.backend = BACKEND
        self.client = ContreeClient(token, base_url=url, timeout=RUN_TIMEOUT_S)
        self.image = self.client.inspect_find_image_by_tag(BASE_TAG)

    def run_true(self) -> tuple[str | None, str | None]:
        """Runs `true`; answers (operation id, error or None)."""
        op = self.client.spawn_instance("true", self.image, disposable=True).uuid
        done = self.client.wait_operation(op, timeout=RUN_TIMEOUT_S)
        status = str(done.status)
        if status != "SUCCESS":
            return op, f"status {status}"
        code = done.metadata.result.state.exit_code
        if code != 0:
            return op, f"exit code {code}"
        return op, None


class ContreeSdkRunner:
    """contree-sdk's idiomatic path: image.run(...).wait() with the sync client.

    The SDK spawns, then polls GET /v1/operations/{id} with backoff starting at
    operation_poll_secs_min (0.1 s by default), so a run costs at least one 0.1 s sleep
    unless it has ended by the first poll.
    """

    path = "ContreeSync image.run('true').wait() (POST, then polls GET status every >= 0.1 s)"
    backend = "httpx (async, on the SDK's background event-loop thread)"

    def __init__(self, url: str, token: str) -> None:
        from contree_sdk import ContreeSync
        from contree_sdk.auth import JWTAuth
        from contree_sdk.config import ContreeConfig

        # JWTAuth: a plain bearer token and URL (IAMAuth would also want a Nebius project).
        self.sdk = ContreeSync(ContreeConfig(auth=JWTAuth(token=token, base_url=url), operation_timeout=RUN_TIMEOUT_S))
        self.image = self.sdk.images.use(BASE_TAG, strict=True)
        if self.image.uuid is None:
            raise RuntimeError(f"contree-sdk resolved {BASE_TAG} to no image UUID")
        # The SDK keeps the operation's UUID to itself; record it on its way out of the
        # SDK's own _start_operation, without changing what the SDK sends or waits for.
        self.last_op: str | None = None
        start = self.sdk._start_operation

        async def recording_start(request):
            uuid = await start(request)
            self.last_op = str(uuid)
            return uuid

        self.sdk._start_operation = recording_start

    def run_true(self) -> tuple[str | None, str | None]:
        self.last_op = None
        done = self.image.run("true").wait()
        if done.exit_code != 0:
            return self.last_op, f"exit code {done.exit_code}"
        return self.last_op, None


def make_runner(client: str, url: str, token: str):
    return ContreeClientRunner(url, token) if client == "contree-client" else ContreeSdkRunner(url, token)


def latency(args: argparse.Namespace) -> dict:
    runner = make_runner(args.client, args.url, args.token)
    warmup_errors = 0
    for _ in range(args.warmup):
        try:
            _, err = runner.run_true()
        except Exception:
            err = "raised"
        warmup_errors += err is not None

    latencies: list[float] = []
    ops: list[str] = []
    errors = 0
    first_error = None
    started_at = time.time()
    cpu0 = rusage_cpu_s()
    for _ in range(args.n):
        t0 = time.perf_counter_ns()
        try:
            op, err = runner.run_true()
        except Exception as exc:  # a failed run is counted, the loop goes on
            op, err = None, short(exc)
        elapsed_ms = (time.perf_counter_ns() - t0) / 1e6
        if op is not None:
            ops.append(op)
        if err is None:
            latencies.append(round(elapsed_ms, 3))
        else:
            errors += 1
            first_error = first_error or err
    cpu_s = rusage_cpu_s() - cpu0

    record = {
        "kind": "latency",
        "client": label(args.client),
        "round": args.round,
        "n": args.n,
        "warmup": args.warmup,
        "latencies_ms": latencies,
        "cpu_ms_per_run": round(cpu_s * 1000 / args.n, 4) if args.n else None,
        "peak_rss_kib": peak_rss_kib(),
        "errors": errors,
        "warmup_errors": warmup_errors,
        "operation_ids": ops,
        "path": runner.path,
        "backend": runner.backend,
        "started_at": round(started_at, 3),
    }
    if first_error is not None:
        record["first_error"] = first_error
    return record


# --- upload ------------------------------------------------------------------------------------


class UploadDeadline(Exception):
    """Raised from a file read once --max-seconds have passed, to abort the upload."""


class DeadlineReader:
    """A seekable binary file that refuses reads after a deadline and counts what was read.

    contree-client's ensure_file hashes the stream, seeks back and then sends it in chunks
    read from here, so the bytes read since the last seek are the bytes handed to the upload.
    """

    def __init__(self, f, deadline: float) -> None:
        self.f = f
        self.deadline = deadline
        self.seeks = 0
        self.read_since_seek = 0
        self.timed_out = False

    def read(self, size: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            self.timed_out = True
            raise UploadDeadline("upload stopped at --max-seconds")
        data = self.f.read(size)
        self.read_since_seek += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.seeks += 1
        self.read_since_seek = 0
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def fd_position(path: Path) -> int | None:
    """The offset of this process's open descriptor on `path`, if one is open."""
    target = str(path.resolve())
    fds = Path("/proc/self/fd")
    try:
        entries = list(fds.iterdir())
    except OSError:
        return None
    for fd in entries:
        try:
            if os.readlink(fd) != target:
                continue
            for line in (Path("/proc/self/fdinfo") / fd.name).read_text().splitlines():
                if line.startswith("pos:"):
                    return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return None


def upload_contree_client(args: argparse.Namespace, path: Path, size: int) -> dict:
    from contree_client.sync import ContreeClient

    client = ContreeClient(args.token, base_url=args.url, timeout=max(args.max_seconds * 2, 60.0))
    with open(path, "rb") as f:
        t0 = time.perf_counter()
        reader = DeadlineReader(f, time.monotonic() + args.max_seconds)
        try:
            stored = client.ensure_file(reader)
        except Exception as exc:
            if not reader.timed_out:
                raise
            return {
                "seconds": None,
                "timed_out_after": args.max_seconds,
                "bytes_done": reader.read_since_seek if reader.seeks else 0,
                "timed_out_in": "upload" if reader.seeks else "hash",
                "abort": short(exc),
            }
        seconds = time.perf_counter() - t0
    stored_size = getattr(stored, "size", None)
    if isinstance(stored_size, int) and stored_size != size:
        raise RuntimeError(f"the server stored {stored_size} bytes of a {size}-byte file")
    return {
        "seconds": round(seconds, 4),
        # No read after ensure_file's rewind: the server already had the content.
        "deduplicated": reader.seeks > 0 and reader.read_since_seek == 0,
        "sha256": getattr(stored, "sha256", None),
    }


def upload_contree_sdk(args: argparse.Namespace, path: Path, size: int) -> dict:
    from contree_sdk import Contree
    from contree_sdk.auth import JWTAuth
    from contree_sdk.config import ContreeConfig

    # The async client runs the very coroutine ContreeSync.files.upload runs (coro_sync of
    # _FilesBaseManager._upload_file), but here it can be cancelled at --max-seconds.
    # transport_timeout is per read/write; it is raised so a slow upload is not cut by it.
    sdk = Contree(
        ContreeConfig(
            auth=JWTAuth(token=args.token, base_url=args.url),
            transport_timeout=max(args.max_seconds * 2, 60.0),
        )
    )
    rchar0 = proc_rchar()
    state: dict = {}

    async def main() -> None:
        task = asyncio.ensure_future(sdk.files.upload(path))
        t0 = time.perf_counter()
        done, _ = await asyncio.wait({task}, timeout=args.max_seconds)
        if task in done:
            state["seconds"] = time.perf_counter() - t0
            state["stored"] = task.result()
            return
        # Where the upload got to, read before cancelling closes the file.
        state["pos"] = fd_position(path)
        state["rchar"] = proc_rchar()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    rchar1 = proc_rchar()
    if "seconds" not in state:
        hashed = rchar0 is not None and state.get("rchar") is not None and state["rchar"] - rchar0 >= size
        return {
            "seconds": None,
            "timed_out_after": args.max_seconds,
            # The SDK hashes the whole file first, then reopens it for the POST: the open
            # descriptor's offset is what the POST has read (to within one 8 KiB buffer).
            "bytes_done": (state.get("pos") or 0) if hashed else 0,
            "timed_out_in": "upload" if hashed else "hash",
        }
    stored = state["stored"]
    stored_size = getattr(stored, "size", None)
    if isinstance(stored_size, int) and stored_size != size:
        raise RuntimeError(f"the server stored {stored_size} bytes of a {size}-byte file")
    record = {"seconds": round(state["seconds"], 4), "sha256": getattr(stored, "sha256", None)}
    if rchar0 is not None and rchar1 is not None:
        # One pass (the hash) when the server had the content, two when it was sent.
        record["deduplicated"] = rchar1 - rchar0 < size + size // 2
    return record


def upload(args: argparse.Namespace) -> dict:
    path = Path(args.file)
    size = path.stat().st_size
    base = {"kind": "upload", "client": label(args.client), "round": args.round, "phase": "first", "bytes": size}

    # A last resort if an abort at --max-seconds does not take: the record says so and the
    # process ends, rather than the benchmark hanging.
    def hard_stop(signum, frame):
        record = dict(base, seconds=None, timed_out_after=args.max_seconds, hard_killed=True, peak_rss_kib=peak_rss_kib())
        append(args.out, record)
        os._exit(3)

    signal.signal(signal.SIGALRM, hard_stop)
    signal.alarm(int(args.max_seconds) + 60)
    if args.client == "contree-client":
        result = upload_contree_client(args, path, size)
        api = "ContreeClient.ensure_file(open file): sha256 pass, GET /v1/files/{sha256}, POST /v1/files (chunked)"
    else:
        result = upload_contree_sdk(args, path, size)
        api = "files.upload(path): sha256 pass, GET /v1/files/{sha256}, POST /v1/files from an aiofiles file"
    signal.alarm(0)
    record = dict(base, **result)
    if record.get("seconds"):
        record["mib_per_s"] = round(size / record["seconds"] / 2**20, 2)
    if record.get("deduplicated"):
        # Not a first upload: labelled so it never counts among first-upload figures.
        record["phase"] = "reupload"
        print("warning: the server already had this content; recorded as phase reupload", file=sys.stderr)
    record["peak_rss_kib"] = peak_rss_kib()
    record["api"] = api
    return record


# --- env ---------------------------------------------------------------------------------------


def env() -> dict:
    record = {
        "kind": "env",
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    for dist in ("contree-client", "contree-sdk", "httpx", "httpcore", "anyio", "aiofiles"):
        record[dist] = version(dist)
    try:
        from contree_client.sync import BACKEND

        record["contree-client-sync-backend"] = BACKEND
    except ImportError:
        record["contree-client-sync-backend"] = None
    return record


# --- main --------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", required=True, choices=("latency", "upload", "env"))
    p.add_argument("--url", help="the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--token", help="its bearer token (never printed)")
    p.add_argument("--client", choices=CLIENTS)
    p.add_argument("--n", type=int, default=200, help="timed runs (latency)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (latency)")
    p.add_argument("--round", type=int, default=0, help="the driver's round number, copied into the record")
    p.add_argument("--file", help="the file to upload (upload); its content must be new to the server")
    p.add_argument("--max-seconds", type=float, default=60.0, help="abort an upload after this long (upload)")
    p.add_argument("--out", help="JSON-lines file to append the record to (default: stdout)")
    args = p.parse_args(argv)
    if args.mode != "env":
        for name in ("url", "token", "client"):
            if not getattr(args, name):
                p.error(f"--{name} is required with --mode {args.mode}")
        if not args.url.startswith(("http://", "https://")):
            p.error(f"--url must start with http:// or https://, got {args.url!r}")
    if args.n < 0 or args.warmup < 0:
        p.error("--n and --warmup must be >= 0")
    if args.max_seconds <= 0:
        p.error("--max-seconds must be > 0")
    if args.mode == "upload":
        if not args.file:
            p.error("--file is required with --mode upload")
        if not Path(args.file).is_file():
            p.error(f"--file {args.file!r} is not a readable file")
    return args


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.mode == "env":
        record = env()
        print(json.dumps(record), flush=True)
        if args.out:
            append(args.out, record)
        return 0
    try:
        record = latency(args) if args.mode == "latency" else upload(args)
    except Exception as exc:
        print(f"{args.client} {args.mode}: {short(exc)}", file=sys.stderr)
        return 1
    append(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
