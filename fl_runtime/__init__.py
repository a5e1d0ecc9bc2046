"""Federated fraud detection runtime: the Flower ServerApp/ClientApp and the ways to run them.

Modules: ``data`` (CSV contract), ``synthetic`` (embedded default data), ``partition`` (split one CSV
into a federation), ``stats``/``model``/``metrics``/``task`` (the learning task), ``records`` (what
travels in Flower messages), ``client_app``/``server_app``/``strategy``/``history`` (the Flower apps),
``report`` (outputs), ``pki``/``deployment``/``local`` (running it on one machine), ``baselines`` and
``compare`` (centralised and local-only references), ``cli`` (the command line).
"""
