"""The runtime's fixtures (stack_factory, db_backend) for every test folder."""

pytest_plugins = ["bibliodesk.runtime.testing"]
