"""The patrons store: tables, repositories, migrations."""
