"""crm import on large files: read as a stream in bounded memory; a line too long to be a row is named."""

import tracemalloc
from pathlib import Path

import pytest

from cli import sources
from cli.main import main

HEADER = "customer_ref,type,occurred_at,text\n"


def write_interactions(path: Path, rows: int) -> int:
    """A CSV of `rows` valid interactions about 4 KB each (wide text), written in blocks; returns its size."""
    note = "x" * 4000
    block = "".join(f"ref-{i % 97},call,2026-11-01T09:00:00Z,{note}\n" for i in range(500))
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for _ in range(rows // 500):
            out.write(block)
    return path.stat().st_size


def dry_run_peak(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Peak Python allocation while `crm import interactions --dry-run` checks the file, and what it printed."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        assert main(["import", "interactions", str(path), "--dry-run", "--rejects", str(path) + ".rejects"]) == 0
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, capsys.readouterr().out


def test_a_dry_run_of_a_file_ten_times_larger_needs_no_more_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small_size = write_interactions(small, 1_500)
    large_size = write_interactions(large, 15_000)
    assert large_size > 60_000_000
    warm = tmp_path / "warm.csv"
    write_interactions(warm, 500)
    dry_run_peak(warm, capsys)  # the first run's lazy imports are not the reader's memory

    small_peak, small_out = dry_run_peak(small, capsys)
    large_peak, large_out = dry_run_peak(large, capsys)

    assert "1500 valid, 0 rejected" in small_out and "15000 valid, 0 rejected" in large_out
    # Streamed: the peak does not follow the file's size (10x the rows, 60 MB), and stays far below it.
    assert large_peak < 1.5 * small_peak + 1_000_000, (small_peak, large_peak, small_size)
    assert large_peak < large_size / 10, (large_peak, large_size)


def test_a_line_longer_than_the_limit_is_named_and_nothing_after_it_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.csv"
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        out.write("ref-1,call,2026-11-01T09:00:00Z,fine\n")
        out.write("ref-2,call,2026-11-01T09:00:00Z," + "y" * sources.MAX_LINE_BYTES + "\n")
        out.write("ref-3,call,2026-11-01T09:00:00Z,fine\n")

    assert main(["import", "interactions", str(path), "--dry-run"]) == 2
    assert f"broken.csv: line 3 is longer than {sources.MAX_LINE_BYTES} bytes" in capsys.readouterr().err


def test_a_json_line_longer_than_the_limit_is_one_rejected_line_and_the_next_lines_keep_their_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.jsonl"
    row = '{"customer_ref": "ref-1", "type": "call", "occurred_at": "2026-11-01T09:00:00Z"}\n'
    with path.open("w", encoding="utf-8") as out:
        out.write(row)
        out.write('{"customer_ref": "ref-2", "text": "' + "y" * sources.MAX_LINE_BYTES + '"}\n')
        out.write(row.replace("ref-1", "ref-3"))
        out.write("not json\n")

    assert main(["import", "interactions", str(path), "--dry-run"]) == 1
    printed = capsys.readouterr().out
    assert "2 valid, 2 rejected" in printed
    assert f"line 2 is longer than {sources.MAX_LINE_BYTES} bytes" in printed
    assert "line 4, character 1: not JSON" in printed
