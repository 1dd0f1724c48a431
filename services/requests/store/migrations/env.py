from bibliodesk.runtime.migrate import run_env

run_env()
