"""Federated fraud detection runtime: the Flower ServerApp and ClientApp, and the ways to run them.

Layers, each importing only from those above it in this list (``tests/test_architecture.py`` checks):

- base modules ``errors`` (one error hierarchy), ``files`` (atomic writes), ``defaults`` (every default),
  ``documents`` (typed JSON documents);
- ``learning``: the learning task, no Flower: the CSV contract, synthetic data, partitions, global
  statistics, the model, metrics, one member's task, fixed-point contributions, the model families as
  state machines driven by verified totals, and the in-process baselines and comparison;
- ``app``: the Flower apps, exactly what the FAB carries to every member: the relay protocol (identity and
  per-run keys, masks, signed contributions, the transcript and its offline check), a member's session and its
  pinned settings, the ClientApp, the ServerApp with its relay, history and report, and the run settings;
- ``launch``: running the apps on one machine: TLS and node keys, Flower's processes and their
  supervisor, the FAB, the one loop that follows a run, the progress view, and ``local``;
- ``aws``: running them across accounts: the settings contract with the stacks, ``federate`` and its
  kickoff of client jobs, the server account, local jobs for rehearsals, ``stage-data``, a client
  job's SageMaker entry point and the Fleet gateway;
- ``cli``: the command line (``python -m fl_runtime``).
"""
