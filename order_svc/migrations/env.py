from messaging.migrations import run_env
from order_svc.tables import metadata

run_env(metadata)
