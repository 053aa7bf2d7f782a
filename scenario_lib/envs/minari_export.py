"""The stored demonstrations as offline-RL data: one Minari dataset per scenario of a benchmark.

Minari holds one observation and action space per dataset, and every scenario has its own (the number of
movable bodies differs), so each scenario gets its own dataset, ``scenarios/<dest>/<scenario id>-v0``.
Its episode is the stored demonstration replayed through the environment (`demo_policy`: the stored
actions, then the last held, until the environment terminates), with the infos (``success``,
``goal_distance``) of every step. The recorded environment spec names the scenario by benchmark and id
(plus the store's URL, never its keys), so ``dataset.recover_environment()`` makes the environment again
wherever that store is reachable.

Minari finds datasets under ``MINARI_DATASETS_PATH``; the export points it at the chosen folder while it
writes, so ``MINARI_DATASETS_PATH=<folder> python -c "import minari; minari.load_dataset(...)"`` reads them.
Datasets are written in Minari's ``arrow`` format (pyarrow; no h5py needed).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scenario_lib.envs.benchmark import Benchmark
from scenario_lib.envs.policies import demo_policy
from scenario_lib.errors import ConfigError

DATASET_NAMESPACE = "scenarios"
DATASET_VERSION = 0
DATA_FORMAT = "arrow"
MINARI_PATH_VARIABLE = "MINARI_DATASETS_PATH"
ALGORITHM_NAME = "scenario_lib stored demonstration (abstract hand, solvability stage)"


@dataclass(frozen=True)
class ExportedDataset:
    """One dataset written: its id, the scenario it holds, its size and where it lies."""

    dataset_id: str
    scenario_id: str
    episodes: int
    steps: int
    path: Path


def dataset_id(dest: str, scenario_id: str) -> str:
    """``scenarios/<dest>/<scenario id>-v0``, with characters Minari's ids refuse ('.') as '_'."""

    def clean(name: str) -> str:
        return re.sub(r"[^-\w]", "_", name)

    return f"{DATASET_NAMESPACE}/{clean(dest)}/{clean(scenario_id)}-v{DATASET_VERSION}"


@contextlib.contextmanager
def minari_datasets_path(folder: Path) -> Iterator[None]:
    """Point Minari at ``folder`` for the duration: it reads its datasets root from the environment only."""
    previous = os.environ.get(MINARI_PATH_VARIABLE)
    os.environ[MINARI_PATH_VARIABLE] = str(folder)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MINARI_PATH_VARIABLE, None)
        else:
            os.environ[MINARI_PATH_VARIABLE] = previous


def export_demonstrations(
    benchmark: Benchmark,
    out_dir: Path,
    *,
    overwrite: bool = False,
    on_scenario: Callable[[str], None] | None = None,
) -> list[ExportedDataset]:
    """Write one Minari dataset per scenario of ``benchmark`` under ``out_dir`` (the Minari datasets folder).

    ConfigError when Minari is not installed or a dataset exists already (unless ``overwrite``).
    """
    try:
        import minari
        from minari.storage import get_dataset_path
    except ImportError as err:
        raise ConfigError(
            f"exporting demonstrations needs Minari ({err}); install the data extra: pip install 'scenario-lib[data]'"
        ) from None
    out_dir = Path(out_dir).expanduser().resolve()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the datasets folder {out_dir} ({err.strerror or err}); choose another --out") from err
    exported = []
    with minari_datasets_path(out_dir):
        for scenario_id in benchmark.scenario_ids:
            identifier = dataset_id(benchmark.dest, scenario_id)
            path = Path(get_dataset_path(identifier))
            if path.exists():
                if not overwrite:
                    raise ConfigError(f"the Minari dataset {identifier} exists already at {path}; pass --overwrite to replace it")
                shutil.rmtree(path)
            env = benchmark.make_env(scenario_id)
            try:
                buffer = _replay_demonstration(env)
                objective = env.unwrapped.scenario.task.objective  # type: ignore[attr-defined]
                with warnings.catch_warnings():
                    # Minari warns for every metadata field left out; there is no permalink or email to give.
                    warnings.filterwarnings("ignore", message=r".*is set to None.*", category=UserWarning)
                    dataset = minari.create_dataset_from_buffers(
                        identifier,
                        [buffer],
                        env=env,
                        eval_env=env.spec,
                        algorithm_name=ALGORITHM_NAME,
                        author="scenario_lib",
                        description=f"Scenario {scenario_id} of benchmark {benchmark.dest}: {objective}",
                        data_format=DATA_FORMAT,
                    )
            finally:
                env.close()
            exported.append(
                ExportedDataset(identifier, scenario_id, dataset.total_episodes, dataset.total_steps, path)
            )
            if on_scenario is not None:
                on_scenario(scenario_id)
    return exported


def _replay_demonstration(env: Any) -> Any:
    """The demonstration replayed through ``env`` as one Minari `EpisodeBuffer` (observations, actions,
    rewards, terminations, truncations and infos, the reset's included)."""
    from minari.data_collector import EpisodeBuffer

    observation, info = env.reset(seed=0)
    policy = demo_policy(env)
    observations = [observation]
    infos = [info]
    actions, rewards, terminations, truncations = [], [], [], []
    terminated = truncated = False
    while not (terminated or truncated):
        action = policy(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(float(reward))
        terminations.append(bool(terminated))
        truncations.append(bool(truncated))
        observations.append(observation)
        infos.append(info)
    return EpisodeBuffer(
        id=0,
        seed=0,
        observations={key: [step[key] for step in observations] for key in observations[0]},
        actions=[np.asarray(action, dtype=np.float64) for action in actions],
        rewards=rewards,
        terminations=terminations,
        truncations=truncations,
        infos={key: [step[key] for step in infos] for key in infos[0]},
    )


__all__ = ["DATASET_NAMESPACE", "ExportedDataset", "dataset_id", "export_demonstrations", "minari_datasets_path"]
