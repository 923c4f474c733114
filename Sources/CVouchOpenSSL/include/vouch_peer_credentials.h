// Linux's `struct ucred`, as getsockopt(SO_PEERCRED) fills it for a Unix socket: glibc declares
// it only under _GNU_SOURCE, which Swift's Glibc module is not built with.
#ifndef VOUCH_PEER_CREDENTIALS_H
#define VOUCH_PEER_CREDENTIALS_H
#include <sys/types.h>

typedef struct {
    pid_t pid;
    uid_t uid;
    gid_t gid;
} vouch_peer_credentials;

#endif
