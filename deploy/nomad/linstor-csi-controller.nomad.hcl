# Controller plugin: creates, deletes, attaches, expands and snapshots volumes through the
# LINSTOR controller. Runs anywhere in the cluster; two instances give fail-over.
# Run with: nomad job run linstor-csi-controller.nomad.hcl

variable "linstor_controllers" {
  type        = string
  description = "LINSTOR controller URLs, comma separated (LS_CONTROLLERS)"
  default     = "http://linstor-controller.service.consul:3370"
}

variable "image" {
  type        = string
  description = "plugin image, built by deploy/docker/build-image.sh"
  default     = "linstor-volume-plugin:0.1.0"
}

job "linstor-csi-controller" {
  type = "service"

  group "controller" {
    count = 2

    network {
      port "metrics" {
        to = 9810
      }
    }

    task "plugin" {
      driver = "docker"

      config {
        image   = var.image
        command = "linstor-csi"
        ports   = ["metrics"]
        args = [
          "--endpoint=unix:///csi/csi.sock",
          "--mode=controller",
          "--node=${node.unique.name}",
          "--driver-name=linstor.csi.linbit.com",
          "--metrics-port=9810",
          "--log-level=info",
        ]
      }

      env {
        LS_CONTROLLERS = var.linstor_controllers
        # Read by linstor-plugin-doctor inside the task (the driver gets --node).
        LS_NODE_NAME = "${node.unique.name}"
      }

      csi_plugin {
        id             = "linstor.csi.linbit.com"
        type           = "controller"
        mount_dir      = "/csi"
        health_timeout = "60s"
      }

      # memory is reserved and is the hard limit; memory_max (LINSTOR calls only) raises the limit
      # where the cluster allows memory oversubscription.
      resources {
        cpu        = 100
        memory     = 128
        memory_max = 256
      }
    }
  }
}
