"""System tests: CLI subprocesses, Prefect flows and servers, deployments, fault injection,
out of core, GPU."""
