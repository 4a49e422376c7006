"""One llama.cpp model version in its own process, serving llama.cpp's OpenAI-compatible HTTP API on loopback.

Started by LlamaCppProcessEngine (llamacpp_process.py); runnable alone for debugging:

    python -m services.inference.engines.llamacpp_child --model model.gguf --context-length 2048 --port 0

Prints one line, `READY http://127.0.0.1:<port>`, once the model is loaded and the server listens (port 0 picks a
free port, so two versions loaded side by side during a swap never collide). Exits on SIGTERM or when its stdin
closes (Ctrl-D when run alone): the parent holds the other end, so a parent that dies, even by SIGKILL, takes the
child with it. SIGINT is ignored: Ctrl-C in a terminal reaches the whole process group, and the service must keep
its engines while it drains, then stops them itself.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from services.inference.engines.llamacpp import server_params

READY = "READY"


def set_autogroup_nice(nice: int, pid: int | str = "self") -> bool:
    """Set the nice value of the autogroup (session) `pid` runs in; False where the kernel has none
    (CONFIG_SCHED_AUTOGROUP off) or refuses. With autogroups on, what a session's threads get against other
    sessions is set here, not by their own nice; with them off (or inside a container's cgroup) this is inert."""
    try:
        with open(f"/proc/{pid}/autogroup", "w", encoding="ascii") as group:
            group.write(str(nice))
        return True
    except OSError:
        return False


def autogroup_nice(pid: int | str = "self") -> int | None:
    """The nice value of `pid`'s autogroup (None without autogroups): `/autogroup-25 nice 10`."""
    try:
        with open(f"/proc/{pid}/autogroup", encoding="ascii") as group:
            return int(group.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return None


def _exit_now(*_: object) -> None:
    # os._exit, not sys.exit: xllamacpp's server destructor can hang (on a server that never handled a
    # request), and nothing here needs cleaning up that the kernel does not release with the process.
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    """Load the model, start llama.cpp's HTTP server, say READY, then wait to be told to stop."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="GGUF file")
    parser.add_argument("--context-length", required=True, type=int, help="context window per slot (tokens)")
    parser.add_argument("--parallel-slots", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--prefill-chunk-tokens", type=int, default=0, help="llama.cpp's n_batch (0: its default)")
    parser.add_argument("--nice", type=int, default=0, help="load at this nice value (the parent restores it)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)  # before any thread exists: llama.cpp's threads inherit it, and the parent resets them all
        # ...and the same for this session's autogroup (the parent started us in a session of our own): across
        # sessions the kernel weighs groups, not threads (llamacpp_process.py)
        set_autogroup_nice(os.getpriority(os.PRIO_PROCESS, 0))
    signal.signal(signal.SIGTERM, _exit_now)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    import xllamacpp  # after the handlers: a stop asked for during the load ends the process right after it

    params = server_params(
        args.model,
        context_length=args.context_length,
        parallel_slots=args.parallel_slots,
        threads=args.threads,
        http_port=args.port,
        prefill_chunk_tokens=args.prefill_chunk_tokens,
    )
    server = xllamacpp.Server(params)
    print(f"{READY} {server.listening_address}", flush=True)
    sys.stdin.buffer.read()  # returns at EOF: the parent closed our stdin, or exited
    _exit_now()


if __name__ == "__main__":
    main()
