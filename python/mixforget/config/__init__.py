"""TOML run and sweep configurations, validated against a schema (docs: api, design-reliability).

A configuration file describes one training problem (the arguments of
:func:`mixforget.simulate`) and, optionally, a grid for :func:`mixforget.sweep`::

    [target]                 # the world p* (docs: theory-model); required
    old_mean = [-3.0]        # a number (d = 1) or a list of d numbers
    new_mean = [3.5]
    old_weight = 0.75        # α* in (0, 1)
    cov = 1.0                # number, list (diagonal) or list of lists (SPD); default 1.0
                             # (or old_cov = …, new_cov = … for unequal covariances)

    [start]                  # the start model; every key defaults to the target's
    new_mean = [0.5]

    [objective]              # required; kind plus the fields of that objective class
    kind = "ReverseKL"       # a class of mixforget.objectives.OBJECTIVES, e.g. ForwardKL | OAPL
    replay = 0.0             # fields, defaults and checks are the dataclass's own

    [run]                    # keyword arguments of mixforget.simulate (defaults shown)
    steps = 2000
    batch_size = 64
    lr = 0.05
    replicates = 1000
    record_every = 10        # must divide steps
    rng = 0                  # root seed (an integer >= 0)
    weight_param = "logit"   # logit | direct
    threads = 2              # optional; results do not depend on it
    lr_scale = { weight = 1.0, old_mean = 1.0, new_mean = 1.0 }   # optional
    train_scales = false     # optional; true adds the lr_scale keys old_scale, new_scale
    scale_param = "direct"   # direct | log (with train_scales)
    update = "sgd"           # sgd | natural (steps preconditioned by the Fisher)

    [sweep]                  # only for `mixforget sweep`
    keep_trajectories = "trajectories"   # optional directory for one .npz per point
    population = false                   # also compute the population flow per point
    separation_mode = "proportional"     # or "fixed" (see mixforget.sweeps.apply_separation)
    [sweep.grid]             # lists of values; the Cartesian product in this key order
    separation = [2.0, 4.0, 6.0]
    batch_size = [16, 64]
    "objective.replay" = [0.0, 0.25]

Grid keys: ``steps``, ``batch_size``, ``lr``, ``replicates``, ``record_every``,
``weight_param``, ``update``, ``separation`` (a number > 0; the start's new mean follows
according to ``[sweep] separation_mode``, see :func:`mixforget.sweeps.apply_separation`),
``old_weight`` (sets the target's and the start's α), ``target.<key>`` and ``start.<key>``
(one model key), ``objective`` (a list of inline tables ``{kind = "…", …}``) and
``objective.<field>`` (a field of the objective).

K-component runs (docs: theory-k-components) replace the two-mode keys of ``[target]`` by
those of :class:`mixforget.Mixture`; ``[start]`` takes the same keys, each defaulting to
the target's, and ``[objective]`` may give ``replay_mix`` (one entry per old component)::

    [target]
    weights = [0.5, 0.3, 0.2]            # K >= 2 numbers in (0, 1) summing to 1
    means = [[-4.0], [0.0], [4.0]]       # K means of d numbers (or K numbers for d = 1)
    cov = 1.0                            # shared; or covs = [1.0, 0.5, 2.0], one per component
    new_components = [2]                 # the new task's components (default: the last)

    [start]
    means = [[-4.0], [0.0], [1.0]]

    [objective]
    kind = "ForwardKL"                   # K >= 3: ForwardKL or ReverseKL
    replay = 0.2
    replay_mix = [0.5, 0.5]              # the replay's split over the old components

Their grid keys are ``weights`` (the target's and the start's), ``target.<key>`` and
``start.<key>`` (weights, means, cov, covs) besides the run and objective keys; a file with
a ``[sequence]`` section instead is a task sequence (:mod:`mixforget.sequences.config`).

Every problem (an unknown key, a wrong type, a value out of range) raises
:class:`ConfigError` with one message naming the key and the allowed values; the CLI turns
it into exit status 2 before anything is written.
"""

from __future__ import annotations

from ._models import MIXTURE_KEYS as MIXTURE_KEYS
from ._models import MODEL_KEYS as MODEL_KEYS
from ._models import OBJECTIVE_CLASSES as OBJECTIVE_CLASSES
from ._models import _objective as _objective  # used by the [sequence] parser
from ._parse import GRID_RUN_KEYS, Config, load_config, parse_config
from ._parse import RUN_KEYS as RUN_KEYS
from ._specs import ConfigError, read_toml
from ._specs import _toml as _toml  # used by the [sequence] parser

__all__ = ["GRID_RUN_KEYS", "Config", "ConfigError", "load_config", "parse_config", "read_toml"]
