"""crm import's duplicate-key check in bounded memory: past a threshold the keys move to a temporary
SQLite file, and a key repeated anywhere in the file is still named with the line that has it first."""

import tracemalloc
from pathlib import Path

import pytest

from cli.keys import FirstLines, digest
from cli.main import main


def test_keys_moved_to_disk_still_answer_the_line_that_carried_them_first() -> None:
    lines = FirstLines(in_memory=3)
    for line in range(2, 12):
        assert lines.claim(digest("external_ref", f"A{line}"), line) == line
    assert lines.on_disk == 9 and len(lines.recent) == 1 and len(lines) == 10
    # Keys on disk, keys still in memory, and a new key after the spill.
    assert lines.claim(digest("external_ref", "A2"), 40) == 2
    assert lines.claim(digest("external_ref", "A11"), 41) == 11
    assert lines.claim(digest("external_ref", "B1"), 42) == 42
    assert lines.claim(digest("external_ref", "B1"), 43) == 42
    # The same value under another field is another key.
    assert lines.claim(digest("external_id", "A2"), 44) == 44
    lines.close()


def test_the_temporary_file_is_removed_when_the_check_ends() -> None:
    lines = FirstLines(in_memory=2)
    for line in range(5):
        lines.claim(digest("external_ref", line), line)
    assert lines._dir is not None
    folder = Path(lines._dir.name)
    assert folder.exists()
    lines.close()
    assert not folder.exists()


def customers_file(path: Path, rows: int, repeats: dict[int, int]) -> Path:
    """`rows` customers with distinct refs, except row i (0-based) that repeats row repeats[i]'s ref."""
    with path.open("w", encoding="utf-8") as out:
        out.write("Name,Ref\n")
        for i in range(rows):
            out.write(f"Customer {i},R{repeats.get(i, i)}\n")
    return path


def test_a_duplicate_far_from_its_first_line_is_named_with_line_and_column_whatever_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = customers_file(tmp_path / "c.csv", 2_000, {1_500: 3, 1_999: 1_400})
    outputs = []
    for threshold in ("1000000", "50"):
        flags = ["--map", "name=Name", "--map", "external_ref=Ref", "--keys-in-memory", threshold]
        assert main(["import", "customers", str(path), "--dry-run", *flags]) == 1
        outputs.append(capsys.readouterr().out)
    in_memory, spilled = outputs
    assert spilled == in_memory
    # Row i is on line i + 2 (the header is line 1).
    assert "line 1502, column 'Ref' (external_ref): 'R3' is already on line 5 of this file" in spilled
    assert "line 2001, column 'Ref' (external_ref): 'R1400' is already on line 1402 of this file" in spilled
    assert "1998 valid, 2 rejected" in spilled


def keyed_dry_run_peak(path: Path, capsys: pytest.CaptureFixture[str], keys_in_memory: int = 1000) -> int:
    flags = ["--map", "name=Name", "--map", "external_ref=Ref", "--keys-in-memory", str(keys_in_memory)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        assert main(["import", "customers", str(path), "--dry-run", "--rejects", f"{path}.rejects", *flags]) == 0
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    capsys.readouterr()
    return peak


def test_the_memory_of_the_duplicate_check_does_not_grow_with_the_number_of_keyed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keyed_dry_run_peak(customers_file(tmp_path / "warm.csv", 1_000, {}), capsys)  # lazy imports
    small = keyed_dry_run_peak(customers_file(tmp_path / "small.csv", 2_000, {}), capsys)
    large = keyed_dry_run_peak(customers_file(tmp_path / "large.csv", 20_000, {}), capsys)
    # Held in a dict, 18,000 more keys would take about 1.8 MB more.
    assert large < 1.2 * small + 300_000, (small, large)
