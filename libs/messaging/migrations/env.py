from messaging.migrations import run_library_env

run_library_env()
