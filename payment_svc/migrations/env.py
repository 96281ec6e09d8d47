from messaging.migrations import run_env
from payment_svc.tables import metadata

run_env(metadata)
