from fulfillment_svc.tables import metadata
from messaging.migrations import run_env

run_env(metadata)
