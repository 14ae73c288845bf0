"""The soak's allocator evidence: pymalloc's and glibc's arenas and the RSS split, read from their own reports."""

import time

from bench.cacheprobe import anon_mib, malloc_mib, parse_malloc_info, parse_pymalloc, probe_line, pymalloc_mib

DEBUGMALLOCSTATS = """Small block threshold = 512, in 32 size classes.
# arenas allocated total           =                   40
# arenas reclaimed                 =                   10
# arenas highwater mark            =                   35
# arenas allocated current         =                   30
30 arenas * 1048576 bytes/arena     =           31,457,280

# bytes in allocated blocks        =           20,971,520
# bytes in available blocks        =            5,242,880
Total                              =           31,457,280
"""

MALLOC_INFO = """<malloc version="1">
<heap nr="0">
<sizes>
</sizes>
<total type="fast" count="0" size="0"/>
<total type="rest" count="3" size="4096"/>
<system type="current" size="10485760"/>
<system type="max" size="20971520"/>
<aspace type="total" size="10485760"/>
<aspace type="mprotect" size="10485760"/>
</heap>
<heap nr="1">
<sizes>
</sizes>
<total type="fast" count="0" size="0"/>
<total type="rest" count="1" size="100"/>
<system type="current" size="2097152"/>
<system type="max" size="2097152"/>
<aspace type="total" size="2097152"/>
<aspace type="mprotect" size="2097152"/>
</heap>
<total type="fast" count="0" size="0"/>
<total type="rest" count="4" size="4196"/>
<total type="mmap" count="2" size="1048576"/>
<system type="current" size="12582912"/>
<system type="max" size="23068672"/>
<aspace type="total" size="12582912"/>
<aspace type="mprotect" size="12582912"/>
</malloc>
"""


def test_pymalloc_arenas_are_read_as_held_against_in_live_objects_and_their_high_water_mark():
    assert parse_pymalloc(DEBUGMALLOCSTATS) == {
        "pymalloc_arenas_mib": 30.0,
        "pymalloc_in_use_mib": 20.0,
        "pymalloc_arenas_max_mib": 35.0,
    }


def test_malloc_info_gives_each_arena_and_what_it_holds_not_the_grand_total():
    assert parse_malloc_info(MALLOC_INFO) == {"arenas": 2, "arena_held_mib": [10.0, 2.0]}


def test_rss_splits_into_anonymous_memory_and_file_pages():
    status = "Name:\tpython\nVmRSS:\t  30720 kB\nRssAnon:\t  20480 kB\nRssFile:\t  10240 kB\nRssShmem:\t 0 kB\n"
    assert anon_mib(status) == {"anon_mib": 20.0, "file_mib": 10.0}


def test_this_process_allocators_are_read_live():
    pymalloc = pymalloc_mib()
    assert 0 < pymalloc["pymalloc_in_use_mib"] <= pymalloc["pymalloc_arenas_mib"] <= pymalloc["pymalloc_arenas_max_mib"]
    glibc = malloc_mib()
    assert glibc["arenas"] >= 1 and 0 < glibc["in_use_mib"] <= glibc["heap_mib"]


def test_a_probe_line_without_an_event_loop_still_has_the_rss_split_and_glibcs_heap():
    line = probe_line(time.monotonic(), lambda: 1.0, None)
    assert line["rss_mib"] == 1.0 and line["anon_mib"] > 0 and line["heap_mib"] > 0
