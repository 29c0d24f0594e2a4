# Functions in private subnets (lambda_subnet_ids) have no route to the AWS APIs they call: Secrets Manager (the
# database secret), SQS (the ingest's queues), SNS (alerts), S3 (the archive) and KMS. Without these endpoints
# the pipeline fails after a green apply. A VPC whose private subnets already route to the internet through a
# NAT sets lambda_subnets_have_nat instead. The functions' security groups must allow HTTPS out to the endpoints.
locals {
  vpc_endpoints = length(var.lambda_subnet_ids) > 0 && !var.lambda_subnets_have_nat
  # Every AWS API the functions' code calls, besides S3 (a gateway endpoint, free and routed by route table).
  interface_endpoint_services = local.vpc_endpoints ? toset(["secretsmanager", "sqs", "sns", "kms"]) : toset([])
  # An interface endpoint takes at most one subnet per availability zone.
  endpoint_subnet_ids = [
    for zone, ids in { for id, subnet in data.aws_subnet.lambda : subnet.availability_zone => id... } : ids[0]
  ]
}

data "aws_subnet" "lambda" {
  for_each = local.vpc_endpoints ? toset(var.lambda_subnet_ids) : toset([])
  id       = each.value
}

# The private subnets' route tables (explicitly associated, as private subnets usually are).
data "aws_route_table" "lambda" {
  for_each  = data.aws_subnet.lambda
  subnet_id = each.key
}

resource "aws_vpc_endpoint" "s3" {
  count = local.vpc_endpoints ? 1 : 0

  vpc_id            = one(distinct([for subnet in data.aws_subnet.lambda : subnet.vpc_id]))
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = distinct([for table in data.aws_route_table.lambda : table.id])
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoint_services

  vpc_id              = aws_security_group.vpc_endpoints[0].vpc_id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = local.endpoint_subnet_ids
  security_group_ids  = [aws_security_group.vpc_endpoints[0].id]
  private_dns_enabled = true # the SDKs' default hostnames resolve to the endpoints
}

resource "aws_security_group" "vpc_endpoints" {
  count = local.vpc_endpoints ? 1 : 0

  name        = "${local.prefix}-vpc-endpoints"
  description = "HTTPS from the ${local.prefix} functions to the AWS API endpoints in their VPC"
  vpc_id      = one(distinct([for subnet in data.aws_subnet.lambda : subnet.vpc_id]))

  ingress {
    description     = "HTTPS from the security groups of the functions"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = var.lambda_security_group_ids
  }
}
