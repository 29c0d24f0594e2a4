#!/usr/bin/env bash
# LocalStack ready hook: say plainly which services this LocalStack can serve to the iotkpi stack.
# The stack itself is deployed from the host with Terraform (see README.md), never from here.
set -u

check() {
  local service=$1; shift
  if "$@" >/dev/null 2>&1; then
    echo "iotkpi: ${service} available"
  else
    echo "iotkpi: WARNING ${service} is not available: ${MISSING_HINT[$service]}" >&2
  fi
}

declare -A MISSING_HINT=(
  [iot]="IoT Core needs a paid LocalStack plan (LOCALSTACK_AUTH_TOKEN); without it use the docker-free local cloud (make local-up)"
  [lambda]="Lambda needs the Docker socket mounted into the LocalStack container"
  [kinesis]="check the LocalStack logs"
  [scheduler]="EventBridge Scheduler is missing from this LocalStack version"
)

check iot awslocal iot describe-endpoint --endpoint-type iot:Data-ATS
check kinesis awslocal kinesis list-streams
check lambda awslocal lambda list-functions
check scheduler awslocal scheduler list-schedules
exit 0
