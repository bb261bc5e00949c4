"""`run --show-tokens`: the text of one sampled request per batch, live in the terminal, from a process of its own.

The measured process only writes each sampled token id into a pipe (a few bytes, non-blocking: a slow terminal
drops tokens rather than slowing the run); decoding and printing happen in the display process, outside the timed
path. Offline vLLM delivers whole outputs at the end of a cycle, so its sampled texts are shown after the window.

    python -m gpu_ops.display --fd N --tokenizer PATH   # started by TokenDisplay
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
from pathlib import Path

RECORD = struct.Struct("<iI")  # request id (-1: a new cycle starts), token id


class TokenDisplay:
    """The measured side: `emit(request_id, token_ids)` from a backend's per-step hook."""

    def __init__(self, tokenizer_path: str, every: int) -> None:
        self.every = max(1, every)  # one request per batch: ids 0, every, 2 * every, ...
        read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")])
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpu_ops.display", "--fd", str(read), "--tokenizer", tokenizer_path],
            pass_fds=(read,),
            env=env,
        )
        os.close(read)

    def sampled(self, request_id: int) -> bool:
        return request_id % self.every == 0

    def emit(self, request_id: int, token_ids) -> None:
        try:
            os.write(self._write, b"".join(RECORD.pack(request_id, int(t)) for t in token_ids))
        except (BlockingIOError, BrokenPipeError):
            pass  # the display fell behind or quit: never wait for it

    def new_cycle(self) -> None:
        self.emit(-1, [0])

    def close(self) -> None:
        os.close(self._write)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="token display of llm-energy-measure (started by `run --show-tokens`)")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--tokenizer", required=True)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    texts: dict[int, list[int]] = {}
    pending = b""
    out = sys.stderr
    cycle = 0
    with os.fdopen(args.fd, "rb", buffering=0) as pipe:
        while chunk := pipe.read(4096):
            data = pending + chunk
            usable = len(data) - len(data) % RECORD.size
            pending = data[usable:]
            for rid, token in RECORD.iter_unpack(data[:usable]):
                if rid < 0:
                    cycle += 1
                    texts.clear()
                    continue
                ids = texts.setdefault(rid, [])
                before = tok.decode(ids, skip_special_tokens=True)
                ids.append(token)
                after = tok.decode(ids, skip_special_tokens=True)
                if len(ids) == 1:
                    out.write(f"\n[cycle {cycle} request {rid}] ")
                out.write(after[len(before) :] if after.startswith(before) else after)
                out.flush()
    out.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
