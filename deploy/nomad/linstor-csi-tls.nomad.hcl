# The monolith plugin job (controller and node in one task) talking to a LINSTOR controller
# on HTTPS with a client certificate. The certificates come from Nomad Variables at
# nomad/jobs/linstor-csi-tls, put there once with:
#   nomad var put -force nomad/jobs/linstor-csi-tls ca_crt=@ca.crt tls_crt=@tls.crt tls_key=@tls.key
# Templates write them into the task's secrets directory (/secrets in the container, never
# in a log or in the job file); LS_ROOT_CA, LS_USER_CERTIFICATE and LS_USER_KEY name the
# files. The same template and env blocks turn linstor-csi-controller.nomad.hcl and
# linstor-csi-node.nomad.hcl into TLS jobs. Run instead of the plain monolith job:
#   nomad job run -var "linstor_controllers=https://linstor-controller.service.consul:3371" linstor-csi-tls.nomad.hcl

variable "linstor_controllers" {
  type        = string
  description = "LINSTOR controller URLs on HTTPS, comma separated (LS_CONTROLLERS)"
  default     = "https://linstor-controller.service.consul:3371"
}

variable "image" {
  type        = string
  description = "plugin image, built by deploy/docker/build-image.sh"
  default     = "linstor-volume-plugin:0.1.0"
}

job "linstor-csi-tls" {
  type = "system"

  group "monolith" {
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
          "--mode=all",
          "--node=${node.unique.name}",
          "--driver-name=linstor.csi.linbit.com",
          "--metrics-port=9810",
          "--log-level=info",
          # staging and target paths are accepted only below stage_publish_base_dir
          "--path-root=/local/csi",
        ]
      }

      # The CA that signed the controller's certificate, and this client's certificate and key.
      template {
        data        = "{{ with nomadVar \"nomad/jobs/linstor-csi-tls\" }}{{ .ca_crt }}{{ end }}"
        destination = "secrets/linstor/ca.crt"
        perms       = "0600"
        change_mode = "restart"
      }

      template {
        data        = "{{ with nomadVar \"nomad/jobs/linstor-csi-tls\" }}{{ .tls_crt }}{{ end }}"
        destination = "secrets/linstor/tls.crt"
        perms       = "0600"
        change_mode = "restart"
      }

      template {
        data        = "{{ with nomadVar \"nomad/jobs/linstor-csi-tls\" }}{{ .tls_key }}{{ end }}"
        destination = "secrets/linstor/tls.key"
        perms       = "0600"
        change_mode = "restart"
      }

      env {
        LS_CONTROLLERS = var.linstor_controllers
        # The task's secrets directory is /secrets in the container.
        LS_ROOT_CA          = "/secrets/linstor/ca.crt"
        LS_USER_CERTIFICATE = "/secrets/linstor/tls.crt"
        LS_USER_KEY         = "/secrets/linstor/tls.key"
        # Read by linstor-plugin-doctor inside the task (the driver gets --node).
        LS_NODE_NAME = "${node.unique.name}"
      }

      csi_plugin {
        id                     = "linstor.csi.linbit.com"
        type                   = "monolith"
        mount_dir              = "/csi"
        stage_publish_base_dir = "/local/csi"
        health_timeout         = "60s"
      }

      # memory is reserved and is the hard limit; memory_max (mkfs of a large volume runs in
      # the task's memory) raises the limit where the cluster allows memory oversubscription.
      resources {
        cpu        = 100
        memory     = 128
        memory_max = 512
      }
    }
  }
}
