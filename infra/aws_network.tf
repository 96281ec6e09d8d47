# The network of the services: an existing VPC (vpc_id and subnet ids), or this one: two
# public subnets (load balancer, NAT gateway) and two private ones (tasks, database).
# One NAT gateway keeps the cost down; it is a single point of failure for the tasks'
# outbound calls, so a production stack wants one per zone or VPC endpoints.
locals {
  create_vpc = var.deploy_services && var.vpc_id == ""
  azs        = length(var.availability_zones) > 0 ? var.availability_zones : try(slice(data.aws_availability_zones.available[0].names, 0, 2), [])

  vpc_id             = local.create_vpc ? one(aws_vpc.main[*].id) : var.vpc_id
  vpc_cidr           = local.create_vpc ? var.vpc_cidr : one(data.aws_vpc.existing[*].cidr_block)
  public_subnet_ids  = local.create_vpc ? aws_subnet.public[*].id : var.public_subnet_ids
  private_subnet_ids = local.create_vpc ? aws_subnet.private[*].id : var.private_subnet_ids
}

data "aws_availability_zones" "available" {
  #checkov:skip=CKV_AWS_394:Only the first two zones (in name order) are used, so a zone AWS adds later does not move the subnets; pass availability_zones to pin them.
  count = local.create_vpc && length(var.availability_zones) == 0 ? 1 : 0
  state = "available"
}

data "aws_vpc" "existing" {
  count = var.deploy_services && var.vpc_id != "" ? 1 : 0
  id    = var.vpc_id
}

resource "aws_vpc" "main" {
  #checkov:skip=CKV2_AWS_11:Flow logs cost per GB ingested; the services log every request themselves. Add aws_flow_log where an audit needs them.
  count = local.create_vpc ? 1 : 0

  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true # service discovery names resolve inside the VPC
  tags                 = { Name = "${local.physical_prefix}order-saga" }
}

# The default security group admits nothing; every resource gets its own.
resource "aws_default_security_group" "main" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.main[0].id
}

resource "aws_subnet" "public" {
  count = local.create_vpc ? 2 : 0

  vpc_id            = aws_vpc.main[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = { Name = "${local.physical_prefix}public-${local.azs[count.index]}" }
}

resource "aws_subnet" "private" {
  count = local.create_vpc ? 2 : 0

  vpc_id            = aws_vpc.main[0].id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index + 8)
  tags              = { Name = "${local.physical_prefix}private-${local.azs[count.index]}" }
}

resource "aws_internet_gateway" "main" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.main[0].id
}

resource "aws_eip" "nat" {
  count  = local.create_vpc ? 1 : 0
  domain = "vpc"
}

resource "aws_nat_gateway" "main" {
  count = local.create_vpc ? 1 : 0

  allocation_id = aws_eip.nat[0].id
  subnet_id     = aws_subnet.public[0].id
  depends_on    = [aws_internet_gateway.main]
}

resource "aws_route_table" "public" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.main[0].id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main[0].id
  }
}

resource "aws_route_table" "private" {
  count  = local.create_vpc ? 1 : 0
  vpc_id = aws_vpc.main[0].id

  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.main[0].id
  }
}

resource "aws_route_table_association" "public" {
  count          = local.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_route_table_association" "private" {
  count          = local.create_vpc ? 2 : 0
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[0].id
}
