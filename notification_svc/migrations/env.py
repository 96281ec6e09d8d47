from messaging.migrations import run_env
from notification_svc.tables import metadata

run_env(metadata)
