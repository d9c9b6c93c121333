"""The runner: runs as folders on disk, the job queue that starts one training child at a time, pipelines of
stages, the child process itself, and the metrics reader the Monitor and the API poll.

    runs.py       run ids and folders: config.yaml, status.json, metrics, checkpoints, model; lineage
    jobs.py       JobManager: queue, start, stop, recover and resume training children (one at a time)
    child.py      the training child (`python -m rlhf_studio train`): status, heartbeat, lock, run_stage
    processes.py  a child from outside: its command and environment, alive?, stop it (SIGTERM, then SIGKILL)
    pipelines.py  PipelineRunner: checks before launch, single runs and stage chains (SFT -> RM -> PPO)
    monitor.py    MetricsReader: metrics rows read incrementally, progress, series for the charts
    commands.py   the YAML and command lines (one process, accelerate, clusters) that run a config

Nothing here imports gradio; the UI and the CLI call into it.
"""
