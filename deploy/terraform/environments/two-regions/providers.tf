# One provider per region Keel runs in. Terraform cannot make provider configurations from a
# variable, so the regions are fixed here and in main.tf, and var.regions must name the same ones
# (checked in main.tf). To add a region (say eu-west-1):
#   1. add a provider block "eu_west_1" below;
#   2. in main.tf, copy every block suffixed _us_west_2 (kms, network, kafka, aurora, service,
#      observability, fis) as _eu_west_1 with providers = { aws = aws.eu_west_1 }, and add them to
#      the lists in locals (local.kms, local.networks, ...);
#   3. add two peering blocks (us-east-1 to eu-west-1, us-west-2 to eu-west-1);
#   4. add the region to var.regions, var.vpc_cidrs, var.image_uris and var.certificate_arns.
# Everything else (routing controls, safety rules, DNS records, replicas, the configuration) is
# expanded over var.regions.

provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"
  default_tags {
    tags = local.tags
  }
}

provider "aws" {
  alias  = "us_west_2"
  region = "us-west-2"
  default_tags {
    tags = local.tags
  }
}

# ARC's control-plane API (clusters, control panels, routing controls, safety rules) exists in
# us-west-2 only, whatever regions Keel runs in. Nothing at run time uses it: the routing controls
# are read and changed through the cluster's five regional data-plane endpoints.
provider "aws" {
  alias  = "arc_control_plane"
  region = "us-west-2"
  default_tags {
    tags = local.tags
  }
}
