/* The Linux guest's vsock echo server for bench/vsock: AF_VSOCK stream on port 5555,
 * one process per connection, echoing until end of stream. Prints the same "listening"
 * line as examples/vsock-echo. Static, so the initramfs needs no C library. */
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
    int listener = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (listener < 0) { perror("vecho: socket"); return 1; }
    struct sockaddr_vm address;
    memset(&address, 0, sizeof address);
    address.svm_family = AF_VSOCK;
    address.svm_cid = VMADDR_CID_ANY;
    address.svm_port = 5555;
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) { perror("vecho: bind"); return 1; }
    if (listen(listener, 64) < 0) { perror("vecho: listen"); return 1; }
    signal(SIGCHLD, SIG_IGN); /* no zombies */
    printf("vsock-echo: listening on port 5555\n");
    fflush(stdout);
    for (;;) {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0) continue;
        if (fork() == 0) {
            static char buffer[65536];
            ssize_t count;
            while ((count = read(connection, buffer, sizeof buffer)) > 0) {
                for (ssize_t done = 0; done < count;) {
                    ssize_t written = write(connection, buffer + done, count - done);
                    if (written <= 0) _exit(0);
                    done += written;
                }
            }
            _exit(0);
        }
        close(connection);
    }
}
