-- Run once by the TimescaleDB image when its data volume is created. The group is the one migration 001
-- creates (it tolerates it existing); the login is Grafana's, with the compose's local-only password.
CREATE ROLE iotkpi_reader NOLOGIN;
CREATE ROLE grafana_reader LOGIN PASSWORD 'grafana_reader' IN ROLE iotkpi_reader;
