"""bench.import_stats: the growth of each store's counters per imported row."""

from bench.import_stats import per_row


def test_each_counter_grows_per_row_between_two_snapshots_and_a_new_store_counts_from_zero():
    before = {"customer": {"xact_commit": 100, "tup_updated": 10}}
    after = {"customer": {"xact_commit": 300, "tup_updated": 1010}, "scoring": {"xact_commit": 50}}
    assert per_row(before, after, rows=1000) == {
        "customer": {"xact_commit": 0.2, "tup_updated": 1.0},
        "scoring": {"xact_commit": 0.05},
    }
