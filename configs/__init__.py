"""One commented `get_config(arg)` file per experiment; installed with the package as
gan_aec.configs (so `--config=vae:smoke` works outside a checkout)."""
