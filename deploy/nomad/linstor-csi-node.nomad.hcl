# Node plugin: attaches, formats (only blank devices) and mounts volumes on every client.
# It must be privileged (mount, /dev/drbd*). The Nomad node name must equal the LINSTOR
# node name, because the plugin reports it as its CSI node id.
# Run with: nomad job run linstor-csi-node.nomad.hcl

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

job "linstor-csi-node" {
  type = "system"

  group "node" {
    network {
      port "metrics" {
        to = 9810
      }
    }

    task "plugin" {
      driver = "docker"

      config {
        image      = var.image
        command    = "linstor-csi"
        privileged = true
        ports      = ["metrics"]
        args = [
          "--endpoint=unix:///csi/csi.sock",
          "--mode=node",
          "--node=${node.unique.name}",
          "--driver-name=linstor.csi.linbit.com",
          "--metrics-port=9810",
          "--log-level=info",
          # staging and target paths are accepted only below stage_publish_base_dir
          "--path-root=/local/csi",
        ]
      }

      env {
        LS_CONTROLLERS = var.linstor_controllers
        # Read by linstor-plugin-doctor inside the task (the driver gets --node).
        LS_NODE_NAME = "${node.unique.name}"
      }

      csi_plugin {
        id                     = "linstor.csi.linbit.com"
        type                   = "node"
        mount_dir              = "/csi"
        stage_publish_base_dir = "/local/csi"
        health_timeout         = "60s"
      }

      # memory is reserved and is the hard limit; memory_max (mkfs of a large volume runs in the task's memory) raises the limit
      # where the cluster allows memory oversubscription.
      resources {
        cpu        = 100
        memory     = 128
        memory_max = 512
      }
    }
  }
}
