# Torito's echo service as a Nomad job, QEMU task driver (docs/deploy.md).
#
# The driver starts `qemu-system-x86_64 -machine type=pc,accel=... -m MEM
# -drive file=IMAGE -nographic ARGS` with user networking and the port_map's
# forwards (virtio-net, DHCP from QEMU: Torito's default ip=dhcp fits). Our ARGS boot
# the image as the kernel; the -drive of the same file is a harmless extra disk the
# guest ignores. The console is the task's stdout: `nomad alloc logs`.
job "torito-echo" {
  datacenters = ["dc1"]
  type        = "service"

  group "echo" {
    network {
      port "echo" {}
    }

    service {
      name     = "torito-echo"
      port     = "echo"
      provider = "nomad"
      check {
        type     = "tcp"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "echo" {
      driver = "qemu"

      # Built by `make images`; served from anywhere the clients can fetch it.
      artifact {
        source      = "https://artifacts.example.com/torito/echo.elf"
        destination = "local/"
      }

      config {
        image_path  = "local/echo.elf"
        # "kvm" on hosts with hardware virtualization; "tcg" (the default) elsewhere.
        accelerator = "kvm"
        # Boot the file as the kernel (PVH); the words after `--` are the
        # application's arguments; NAME=VALUE tokens its environment.
        args = [
          "-kernel", "local/echo.elf",
          "-append", "log=info GREETING=hola --",
          "-no-reboot",
          # Entropy for TCP sequence numbers and DHCP (the CPU may have no RDRAND).
          "-device", "virtio-rng-pci",
        ]
        port_map {
          echo = 5555
        }
        # Sends `system_powerdown` on `nomad alloc stop`: an ACPI power-button event
        # (docs/deploy.md, "Stopping").
        graceful_shutdown = true
      }

      resources {
        cpu    = 500
        memory = 128 # the driver's minimum
      }

      # QEMU ends on the guest's ACPI power-off with status 0 whatever main returned
      # (no exit device here): the console's `torito: exit(N)` line says which.
      restart {
        attempts = 3
        interval = "5m"
        delay    = "5s"
        mode     = "delay"
      }
    }
  }
}
