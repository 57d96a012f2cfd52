"""Which part of a sharded cohort this process runs: the options, else torchrun's or a SLURM array's variables."""

import pytest

from medcam.cases import part_from_environment
from medcam.errors import MedcamError


@pytest.mark.parametrize("given, environ, expected", [
    ((None, None), {}, (1, 0)),
    ((4, 2), {"WORLD_SIZE": "8", "RANK": "1"}, (4, 2)),  # the options win
    ((None, None), {"WORLD_SIZE": "3", "RANK": "2"}, (3, 2)),
    ((None, None), {"SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10"}, (5, 1)),
    ((None, None), {"SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_ID": "1"}, (2, 1)),  # an array from 0
    ((None, None), {"WORLD_SIZE": "", "RANK": "0", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_ID": "0"}, (2, 0)),
], ids=["whole", "options", "torchrun", "slurm-from-10", "slurm-from-0", "empty-world-size"])
def test_the_part_of_a_sharded_run(given, environ, expected):
    assert part_from_environment(*given, environ=environ) == expected


def test_a_part_without_its_count_or_a_variable_that_is_no_number_is_one_error():
    with pytest.raises(MedcamError, match="--num-parts and --part-id go together"):
        part_from_environment(4, None, environ={})
    with pytest.raises(MedcamError, match=r"WORLD_SIZE='two', RANK='1': expected whole numbers"):
        part_from_environment(environ={"WORLD_SIZE": "two", "RANK": "1"})
