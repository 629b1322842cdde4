"""DVC and Prefect around the stages: what is current, versioning, flow runs and their server, reproducing a run."""
