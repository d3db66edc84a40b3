from collections import Counter

import pytest
from harness.config import Config, quick
from harness.monitor import Phase, split
from harness.stats import median, percentile, spread


def test_percentile_interpolates_between_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)


def test_median_and_spread_ignore_missing_runs() -> None:
    values = [3.0, float("nan"), 1.0, 2.0]
    assert median(values) == 2.0
    assert spread(values) == (1.0, 3.0)


def test_drain_size_per_mode() -> None:
    config = Config()
    assert config.drain_size(1) == 20_000
    assert config.drain_size(2) == 10_000
    assert config.drain_size(1, share=0.05) == 1_000
    assert quick(config).drain_size(1, share=0.05) == 250


MONITOR = """\
1795867516.500000 [0 127.0.0.1:5000] "INFO" "commandstats"
1795867516.500100 [0 127.0.0.1:6000] "EVALSHA" "abc" "2" "k1" "k2"
1795867516.500110 [0 lua] "HSET" "{bench}:job:1" "status" "pending"
1795867516.500120 [0 lua] "RPUSH" "{bench}:queue:default:1" "1"
1795867516.500200 [0 127.0.0.1:5000] "ZCARD" "{bench}:completed"
1795867516.500300 [0 127.0.0.1:5000] "INFO" "commandstats"
1795867516.500400 [0 127.0.0.1:6001] "CLIENT" "SETNAME" "worker \\"1\\""
1795867516.500500 [0 127.0.0.1:6001] "EVALSHA" "def" "1" "k"
1795867516.500510 [0 lua] "LPOP" "{bench}:queue:default:1"
1795867516.500600 [0 127.0.0.1:5000] "INFO" "commandstats"
1795867516.500700 [0 127.0.0.1:6001] "BLPOP" "{bench}:wakeup" "1"
"""


def test_split_counts_round_trips_and_commands_per_phase() -> None:
    # commandstats as the server would count: every command, those inside scripts too; an INFO
    # counts itself in the next snapshot only.
    snapshots = [
        Counter(),
        Counter({"info": 1, "evalsha": 1, "hset": 1, "rpush": 1, "zcard": 1}),
        Counter({"info": 2, "evalsha": 2, "hset": 1, "rpush": 1, "zcard": 1})
        + Counter({"client|setname": 1, "lpop": 1}),
    ]
    enqueue, drain = split(MONITOR.splitlines(), "127.0.0.1:5000", snapshots)
    # The harness's INFO and ZCARD are left out.
    assert enqueue.total == Counter({"evalsha": 1, "hset": 1, "rpush": 1})
    assert enqueue.in_scripts == Counter({"hset": 1, "rpush": 1})
    assert (enqueue.commands, enqueue.round_trips) == (3, 1)
    assert (drain.commands, drain.round_trips) == (3, 2)
    per = drain.per(2)
    assert per["round_trips"] == 1.0
    assert per["top_level"] == {"client|setname": 0.5, "evalsha": 0.5}
    assert per["in_scripts"] == {"lpop": 0.5}


def test_phase_without_scripts() -> None:
    phase = Phase(total=Counter({"multi": 2, "hset": 2, "exec": 2}), in_scripts=Counter())
    assert phase.round_trips == phase.commands == 6
