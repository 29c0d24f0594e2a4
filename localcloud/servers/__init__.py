"""The servers the local cloud starts: the AWS endpoint (moto and its patches), mosquitto, PostgreSQL, and the
process bookkeeping they share."""
