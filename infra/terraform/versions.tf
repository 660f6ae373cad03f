terraform {
  # 1.9: validation blocks that refer to other variables.
  required_version = ">= 1.9"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.0"
    }
  }
}

# Terraform configures every provider of the configuration, also those of the
# clouds not chosen: those are configured so that they neither look for
# credentials nor call their cloud (no resource of theirs is planned).
locals {
  off_aws   = var.cloud_provider != "aws"
  off_gcp   = var.cloud_provider != "gcp"
  off_azure = var.cloud_provider != "azure"
}

provider "aws" {
  region                      = local.off_aws ? "us-east-1" : var.region
  skip_credentials_validation = local.off_aws
  skip_requesting_account_id  = local.off_aws
  skip_metadata_api_check     = local.off_aws
  skip_region_validation      = local.off_aws
  default_tags {
    tags = var.tags
  }
}

provider "google" {
  project      = var.gcp_project_id
  region       = local.off_gcp ? null : var.region
  access_token = local.off_gcp ? "unused" : null
}

provider "azurerm" {
  features {}
  subscription_id                 = local.off_azure ? "00000000-0000-0000-0000-000000000000" : var.azure_subscription_id
  resource_provider_registrations = "none"
  use_cli                         = !local.off_azure
}
