"""The launcher protocol's declarations (spoold/exec/protocol.py, messages.py) and its frames.

The ops and outcomes are written twice on purpose: as run-time constants in
protocol.py and as ``Literal`` types in messages.py, which the launcher never
loads. These keep the two lists the same, and check a frame's round trip.
"""

from __future__ import annotations

import os
from typing import get_args

import pytest

from spoold.exec.messages import OpName, OutcomeName
from spoold.exec.protocol import MAX_FRAME, FrameReader, Op, Outcome, encode_frame, write_all


def values(namespace: type) -> set[str]:
    return {value for name, value in vars(namespace).items() if name.isupper()}


def test_the_ops_and_outcomes_are_the_same_in_both_declarations() -> None:
    assert values(Op) == set(get_args(OpName))
    assert values(Outcome) == set(get_args(OutcomeName))


def test_frames_come_back_whole_however_the_bytes_are_cut() -> None:
    messages = [
        {"op": Op.STARTED, "key": "j1", "pid": 7, "started_at": 1.5},
        {"op": Op.FINISHED, "key": "j1", "outcome": Outcome.OK, "result": "é" * 70_000},
    ]
    data = b"".join(encode_frame(m) for m in messages)  # type: ignore[arg-type]
    reader = FrameReader()
    pieces = [data[start : start + 4099] for start in range(0, len(data), 4099)]
    got = [message for piece in pieces for message in reader.feed(piece)]
    assert got == messages


def test_a_frame_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="over the limit"):
        list(FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big")))


def test_write_all_writes_everything_to_a_pipe_that_takes_less_at_once() -> None:
    read_end, write_end = os.pipe()
    data = os.urandom(200_000)  # more than a pipe holds: os.write takes it in parts
    pid = os.fork()
    if pid == 0:  # the child drains the pipe and exits
        os.close(write_end)
        received = b""
        while chunk := os.read(read_end, 65536):
            received += chunk
        os._exit(0 if received == data else 1)
    os.close(read_end)
    write_all(write_end, data)
    os.close(write_end)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
