"""The docker-free local cloud for iotkpi: moto server, MQTT broker + IoT rules engine, Kinesis event
source mapping poller, scheduler, Lambda invoker and a private PostgreSQL cluster."""
