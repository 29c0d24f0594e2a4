"""Code shared by the iotkpi Lambda functions: configuration, database access, migrations, telemetry model."""
