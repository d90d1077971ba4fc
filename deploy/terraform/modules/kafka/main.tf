# One region's Kafka: an MSK cluster of three brokers, one per availability zone, TLS between clients
# and brokers and between brokers, encrypted at rest with the region's key, broker logs to
# CloudWatch.
#
# Topics are NOT created here. Every Keel service creates the topics it uses when it starts, from its
# configuration ([kafka] partitions and replication_factor, rendered into KEEL_CONFIG_TOML by the
# service module); automatic topic creation is off so that a typo never makes a topic. Topics are
# region-local and not replicated between regions (DESIGN section 5).

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
}

resource "aws_security_group" "brokers" {
  name        = "${var.name_prefix}-msk"
  description = "MSK brokers: TLS (9094) from Keel's tasks only"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "tls_from_tasks" {
  for_each                     = var.client_security_groups
  security_group_id            = aws_security_group.brokers.id
  description                  = "Kafka over TLS from a Keel task group"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = 9094
  to_port                      = 9094
}

# A peered region's tasks produce the inter-application topics here (and keelctl replays here).
resource "aws_vpc_security_group_ingress_rule" "tls_from_peer_regions" {
  for_each          = toset(var.peer_cidrs)
  security_group_id = aws_security_group.brokers.id
  description       = "Kafka over TLS from a peered region's private subnets"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 9094
  to_port           = 9094
}

resource "aws_msk_configuration" "this" {
  name           = "${var.name_prefix}-${local.region}"
  kafka_versions = [var.kafka_version]
  server_properties = join("\n", [
    "auto.create.topics.enable=false",
    "default.replication.factor=3",
    "min.insync.replicas=2",
    "num.partitions=${var.partitions}",
    "unclean.leader.election.enable=false",
    "delete.topic.enable=false",
  ])
}

resource "aws_cloudwatch_log_group" "brokers" {
  name              = "/${var.name_prefix}/msk"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_msk_cluster" "this" {
  cluster_name           = "${var.name_prefix}-${local.region}"
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3
  enhanced_monitoring    = "PER_BROKER"

  broker_node_group_info {
    instance_type   = var.broker_instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.brokers.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.broker_volume_gib
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  # The services connect with security_protocol "ssl" and no client certificate: TLS on 9094,
  # access limited by the security group above.
  client_authentication {
    unauthenticated = true
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.kms_key_arn
    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers.name
      }
    }
  }
}
