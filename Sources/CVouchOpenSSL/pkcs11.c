/* CA keys in a PKCS#11 token, called through the PKCS#11 C API directly.
 *
 * A token key reaches OpenSSL as an EC EVP_PKEY that holds only the public point and whose
 * EC_KEY_METHOD signs with C_Sign(CKM_ECDSA) in the token: X509_sign, X509_CRL_sign,
 * OCSP_basic_sign and EVP_DigestSign take it unchanged, so OpenSSL still does every encoding.
 *
 * Concurrency: one "anchor" session per token holds the login and is never closed (closing a
 * token's last session logs the application out); signers take pooled sessions, because two
 * operations on one session fail with CKR_OPERATION_ACTIVE. A module's rwlock is taken shared by
 * every token call and exclusively by recovery, since C_Finalize must never overlap a C_Sign.
 *
 * After a run-time failure a token is marked failed and signs fail fast until recovery, which
 * re-initializes the module, logs in once (a refused PIN is never retried: hardware tokens lock),
 * finds every key again by CKA_ID and checks its public point did not change. */
#define OPENSSL_SUPPRESS_DEPRECATED /* EC_KEY_METHOD: still in OpenSSL 3, the bridge's one legacy API */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "vouch_openssl.h"
#include "pkcs11/pkcs11.h"

#define POOL_CAP 16

typedef struct vouch_p11_module vouch_p11_module;
typedef struct vouch_p11_key vouch_p11_key;
struct vouch_p11_key {
    vouch_p11_token *token;
    unsigned char id[64];
    size_t id_len;
    CK_OBJECT_HANDLE priv, pub;
    unsigned char point[160]; /* the uncompressed public point recorded at first load */
    size_t point_len;
    EVP_PKEY *pkey;
    vouch_p11_key *next;
};
struct vouch_p11_token {
    vouch_p11_module *module;
    char label[33];
    char *pin;
    size_t pin_len;
    CK_SLOT_ID slot;
    CK_SESSION_HANDLE anchor;
    pthread_mutex_t lock; /* pool, state, reason */
    pthread_cond_t returned;
    CK_SESSION_HANDLE idle[POOL_CAP];
    int idle_count, open_count;
    int state;            /* VOUCH_P11_OK, VOUCH_P11_FAILED, VOUCH_P11_PIN_REFUSED */
    unsigned long failed_rv;
    long failed_since;
    char reason[256];
    vouch_p11_key *keys;
    vouch_p11_token *next;
};
struct vouch_p11_module {
    char *path;
    void *library;
    CK_FUNCTION_LIST *f;
    pthread_rwlock_t lock;
    int initialized;
    vouch_p11_token *tokens;
    vouch_p11_module *next;
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static vouch_p11_module *modules;
static __thread unsigned long last_sign_rv;

static void say(char *err, size_t errlen, const char *format, ...) {
    if (err == NULL || errlen == 0) return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

const char *vouch_p11_rv_name(unsigned long rv) {
    switch (rv) {
#define NAME(x) case x: return #x;
    NAME(CKR_OK) NAME(CKR_CANCEL) NAME(CKR_HOST_MEMORY) NAME(CKR_SLOT_ID_INVALID) NAME(CKR_GENERAL_ERROR)
    NAME(CKR_FUNCTION_FAILED) NAME(CKR_ARGUMENTS_BAD) NAME(CKR_ATTRIBUTE_SENSITIVE) NAME(CKR_ATTRIBUTE_TYPE_INVALID)
    NAME(CKR_DATA_INVALID) NAME(CKR_DATA_LEN_RANGE) NAME(CKR_DEVICE_ERROR) NAME(CKR_DEVICE_MEMORY) NAME(CKR_DEVICE_REMOVED)
    NAME(CKR_FUNCTION_CANCELED) NAME(CKR_FUNCTION_NOT_SUPPORTED) NAME(CKR_KEY_HANDLE_INVALID) NAME(CKR_KEY_TYPE_INCONSISTENT)
    NAME(CKR_KEY_FUNCTION_NOT_PERMITTED) NAME(CKR_MECHANISM_INVALID) NAME(CKR_MECHANISM_PARAM_INVALID)
    NAME(CKR_OBJECT_HANDLE_INVALID) NAME(CKR_OPERATION_ACTIVE) NAME(CKR_OPERATION_NOT_INITIALIZED)
    NAME(CKR_PIN_INCORRECT) NAME(CKR_PIN_INVALID) NAME(CKR_PIN_LEN_RANGE) NAME(CKR_PIN_EXPIRED) NAME(CKR_PIN_LOCKED)
    NAME(CKR_SESSION_CLOSED) NAME(CKR_SESSION_COUNT) NAME(CKR_SESSION_HANDLE_INVALID) NAME(CKR_SESSION_READ_ONLY)
    NAME(CKR_TEMPLATE_INCOMPLETE) NAME(CKR_TEMPLATE_INCONSISTENT) NAME(CKR_TOKEN_NOT_PRESENT)
    NAME(CKR_TOKEN_NOT_RECOGNIZED) NAME(CKR_TOKEN_WRITE_PROTECTED) NAME(CKR_USER_ALREADY_LOGGED_IN)
    NAME(CKR_USER_NOT_LOGGED_IN) NAME(CKR_USER_PIN_NOT_INITIALIZED) NAME(CKR_USER_TYPE_INVALID)
    NAME(CKR_BUFFER_TOO_SMALL) NAME(CKR_CRYPTOKI_NOT_INITIALIZED) NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED)
#undef NAME
    default: {
        static __thread char other[32];
        snprintf(other, sizeof other, "CKR 0x%lx", rv);
        return other;
    }
    }
}

static int pin_refusal(CK_RV rv) {
    return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED || rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID
        || rv == CKR_PIN_LEN_RANGE;
}

/* A sign or probe saw the token fail: the first failure's time and reason stay until recovery. */
static void mark_failed(vouch_p11_token *t, unsigned long rv, const char *reason) {
    pthread_mutex_lock(&t->lock);
    if (t->state == VOUCH_P11_OK) {
        t->state = VOUCH_P11_FAILED;
        t->failed_rv = rv;
        t->failed_since = (long)time(NULL);
        snprintf(t->reason, sizeof t->reason, "%s", reason);
    }
    pthread_mutex_unlock(&t->lock);
}

/* What recovery found: ok, still failing (with today's reason, since the first failure), or a
   refused PIN, which stays until the process restarts. */
static void set_state(vouch_p11_token *t, int state, unsigned long rv, const char *reason) {
    pthread_mutex_lock(&t->lock);
    if (t->state == VOUCH_P11_OK || state == VOUCH_P11_OK) t->failed_since = (long)time(NULL);
    t->state = state;
    t->failed_rv = rv;
    snprintf(t->reason, sizeof t->reason, "%s", reason);
    pthread_mutex_unlock(&t->lock);
}

/* ---- sessions ---- */

static CK_SESSION_HANDLE take_session(vouch_p11_token *t, CK_RV *rv) {
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    pthread_mutex_lock(&t->lock);
    while (t->idle_count == 0 && t->open_count >= POOL_CAP) pthread_cond_wait(&t->returned, &t->lock);
    if (t->idle_count > 0) s = t->idle[--t->idle_count];
    else t->open_count++;
    pthread_mutex_unlock(&t->lock);
    if (s != CK_INVALID_HANDLE) { *rv = CKR_OK; return s; }
    *rv = t->module->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    if (*rv != CKR_OK) {
        pthread_mutex_lock(&t->lock);
        t->open_count--;
        pthread_cond_signal(&t->returned);
        pthread_mutex_unlock(&t->lock);
        return CK_INVALID_HANDLE;
    }
    return s;
}

/* A session whose call failed is closed, never pooled: its state is unknown. */
static void give_session(vouch_p11_token *t, CK_SESSION_HANDLE s, CK_RV rv) {
    if (rv != CKR_OK) t->module->f->C_CloseSession(s);
    pthread_mutex_lock(&t->lock);
    if (rv == CKR_OK) t->idle[t->idle_count++] = s;
    else t->open_count--;
    pthread_cond_signal(&t->returned);
    pthread_mutex_unlock(&t->lock);
}

/* ---- the OpenSSL bridge ---- */

static int key_index = -1;
static EC_KEY_METHOD *bridge_method;
static pthread_once_t bridge_once = PTHREAD_ONCE_INIT;

static ECDSA_SIG *bridge_sign_sig(const unsigned char *digest, int length, const BIGNUM *kinv, const BIGNUM *r,
                                  EC_KEY *ec) {
    (void)kinv; (void)r;
    vouch_p11_key *k = EC_KEY_get_ex_data(ec, key_index);
    if (k == NULL) { last_sign_rv = CKR_KEY_HANDLE_INVALID; return NULL; }
    vouch_p11_token *t = k->token;
    CK_FUNCTION_LIST *f = t->module->f;
    CK_RV rv;
    pthread_mutex_lock(&t->lock);
    int state = t->state;
    unsigned long failed_rv = t->failed_rv;
    pthread_mutex_unlock(&t->lock);
    /* A failed token fails fast before the module lock, which a recovery holds exclusively (C_Finalize,
       C_Initialize: seconds on an unreachable network HSM), so no request thread waits for it. */
    int locked = state == VOUCH_P11_OK;
    if (locked) {
        pthread_rwlock_rdlock(&t->module->lock);
        pthread_mutex_lock(&t->lock);
        state = t->state;
        failed_rv = t->failed_rv;
        pthread_mutex_unlock(&t->lock);
    }
    unsigned char rs[2 * 66];
    CK_ULONG rs_len = sizeof rs;
    if (state != VOUCH_P11_OK) {
        rv = failed_rv != CKR_OK ? failed_rv : CKR_DEVICE_ERROR; /* fail fast until recovery */
    } else if (k->priv == CK_INVALID_HANDLE) {
        rv = CKR_KEY_HANDLE_INVALID;
    } else {
        CK_SESSION_HANDLE s = take_session(t, &rv);
        if (s != CK_INVALID_HANDLE) {
            CK_MECHANISM mechanism = { CKM_ECDSA, NULL, 0 };
            rv = f->C_SignInit(s, &mechanism, k->priv);
            if (rv == CKR_OK) rv = f->C_Sign(s, (CK_BYTE *)digest, (CK_ULONG)length, rs, &rs_len);
            give_session(t, s, rv);
        }
        if (rv != CKR_OK) {
            mark_failed(t, rv, vouch_p11_rv_name(rv));
        } else if (rs_len != k->point_len - 1) {
            /* r and s, each the size of the curve's field: half of the uncompressed point. Any other
               length (past the buffer, odd, truncated) is a broken token, never a signature. */
            char reason[96];
            snprintf(reason, sizeof reason, "the token returned a signature of %lu bytes, not %lu",
                     (unsigned long)rs_len, (unsigned long)(k->point_len - 1));
            rv = CKR_FUNCTION_FAILED;
            mark_failed(t, rv, reason);
        }
    }
    if (locked) pthread_rwlock_unlock(&t->module->lock);
    last_sign_rv = rv;
    if (rv != CKR_OK) {
        ERR_raise_data(ERR_LIB_EC, ERR_R_INTERNAL_ERROR, "PKCS#11 token signature failed");
        return NULL;
    }
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *sr = BN_bin2bn(rs, (int)(rs_len / 2), NULL), *ss = BN_bin2bn(rs + rs_len / 2, (int)(rs_len / 2), NULL);
    if (sig == NULL || sr == NULL || ss == NULL || ECDSA_SIG_set0(sig, sr, ss) != 1) {
        ECDSA_SIG_free(sig); BN_free(sr); BN_free(ss);
        return NULL;
    }
    return sig;
}

static void bridge_setup(void) {
    key_index = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    bridge_method = EC_KEY_METHOD_new(EC_KEY_get_default_method());
    int (*sign)(int, const unsigned char *, int, unsigned char *, unsigned int *, const BIGNUM *, const BIGNUM *,
                EC_KEY *) = NULL;
    EC_KEY_METHOD_get_sign(bridge_method, &sign, NULL, NULL);
    EC_KEY_METHOD_set_sign(bridge_method, sign, NULL, bridge_sign_sig);
}

unsigned long vouch_p11_take_sign_error(void) {
    unsigned long rv = last_sign_rv;
    last_sign_rv = CKR_OK;
    return rv;
}

/* ---- objects ---- */

static const unsigned char P256_OID[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const unsigned char P384_OID[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };

static int curve_of(const unsigned char *params, CK_ULONG length) {
    if (length == sizeof P256_OID && memcmp(params, P256_OID, length) == 0) return NID_X9_62_prime256v1;
    if (length == sizeof P384_OID && memcmp(params, P384_OID, length) == 0) return NID_secp384r1;
    return NID_undef;
}

/* Up to two objects of `cls` with CKA_ID `id` (and CKA_LABEL `label` when not NULL): the count
   tells "none", "one" and "ambiguous" apart. */
static CK_RV find_objects(vouch_p11_token *t, CK_SESSION_HANDLE s, CK_OBJECT_CLASS cls, const unsigned char *id,
                          size_t id_len, const char *label, CK_OBJECT_HANDLE *found, CK_ULONG *count) {
    CK_FUNCTION_LIST *f = t->module->f;
    CK_ATTRIBUTE template[3] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, (void *)id, id_len } };
    CK_ULONG n = 2;
    if (label != NULL) { template[2] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)label, strlen(label) }; n = 3; }
    CK_RV rv = f->C_FindObjectsInit(s, template, n);
    if (rv != CKR_OK) return rv;
    rv = f->C_FindObjects(s, found, 2, count);
    if (rv == CKR_OK && *count > 2) rv = CKR_GENERAL_ERROR; /* more handles than room for: a broken module */
    f->C_FindObjectsFinal(s);
    return rv;
}

/* The public point of `pub` as an uncompressed point (CKA_EC_POINT is usually a DER OCTET STRING
   around it; some tokens return the bare point). */
static CK_RV read_point(vouch_p11_token *t, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE pub, unsigned char *point,
                        size_t *point_len) {
    unsigned char buffer[200];
    CK_ATTRIBUTE a = { CKA_EC_POINT, buffer, sizeof buffer };
    CK_RV rv = t->module->f->C_GetAttributeValue(s, pub, &a, 1);
    if (rv != CKR_OK) return rv;
    if (a.ulValueLen > sizeof buffer) return CKR_ATTRIBUTE_VALUE_INVALID; /* a module reporting more than it was given */
    const unsigned char *p = buffer;
    ASN1_OCTET_STRING *wrapped = d2i_ASN1_OCTET_STRING(NULL, &p, (long)a.ulValueLen);
    if (wrapped != NULL && p == buffer + a.ulValueLen && wrapped->length > 0 && wrapped->data[0] == 0x04
        && (size_t)wrapped->length <= 160) {
        memcpy(point, wrapped->data, (size_t)wrapped->length);
        *point_len = (size_t)wrapped->length;
    } else if (a.ulValueLen > 0 && a.ulValueLen <= 160 && buffer[0] == 0x04) {
        memcpy(point, buffer, a.ulValueLen);
        *point_len = a.ulValueLen;
    } else {
        rv = CKR_ATTRIBUTE_VALUE_INVALID;
    }
    ASN1_OCTET_STRING_free(wrapped);
    return rv;
}

static void hex(const unsigned char *bytes, size_t length, char *out, size_t out_len) {
    size_t i = 0;
    for (; i < length && 2 * i + 2 < out_len; i++) snprintf(out + 2 * i, 3, "%02x", bytes[i]);
    out[2 * i] = 0;
}

/* Finds the key pair with CKA_ID `id` and checks it is one Vouch signs with. 0 on success with
   handles, point and curve set; else the message in err. Caller holds the module lock. */
static int locate(vouch_p11_token *t, CK_SESSION_HANDLE s, const unsigned char *id, size_t id_len, const char *label,
                  CK_OBJECT_HANDLE *priv, CK_OBJECT_HANDLE *pub, unsigned char *point, size_t *point_len, int *nid,
                  char *err, size_t errlen) {
    CK_FUNCTION_LIST *f = t->module->f;
    char idhex[2 * 64 + 1];
    hex(id, id_len, idhex, sizeof idhex);
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    CK_RV rv = find_objects(t, s, CKO_PRIVATE_KEY, id, id_len, label, found, &count);
    if (rv != CKR_OK) { say(err, errlen, "token \"%s\": cannot search its keys: %s", t->label, vouch_p11_rv_name(rv)); return -1; }
    if (count == 0) {
        say(err, errlen, "token \"%s\" holds no private key with id %s%s%s%s", t->label, idhex,
            label ? " (object \"" : "", label ? label : "", label ? "\")" : "");
        return -1;
    }
    if (count > 1) { say(err, errlen, "token \"%s\" holds several private keys with id %s", t->label, idhex); return -1; }
    *priv = found[0];
    CK_KEY_TYPE type = 0;
    CK_BBOOL sign = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
    unsigned char params[64];
    CK_ATTRIBUTE attributes[] = {
        { CKA_KEY_TYPE, &type, sizeof type }, { CKA_SIGN, &sign, sizeof sign },
        { CKA_SENSITIVE, &sensitive, sizeof sensitive }, { CKA_EXTRACTABLE, &extractable, sizeof extractable },
    };
    rv = f->C_GetAttributeValue(s, *priv, attributes, 4);
    if (rv != CKR_OK) { say(err, errlen, "token \"%s\": cannot read the attributes of key %s: %s", t->label, idhex, vouch_p11_rv_name(rv)); return -1; }
    const char *shown = label ? label : idhex;
    if (type != CKK_EC) {
        say(err, errlen, "the key \"%s\" in token \"%s\" is %s: Vouch's CA keys are EC P-256 or P-384", shown, t->label,
            type == CKK_RSA ? "RSA" : "not an EC key");
        return -1;
    }
    if (!sign) { say(err, errlen, "the key \"%s\" in token \"%s\" may not sign (CKA_SIGN false)", shown, t->label); return -1; }
    if (!sensitive || extractable) {
        say(err, errlen, "the key \"%s\" in token \"%s\" can leave the token (%s): Vouch signs only with keys that cannot",
            shown, t->label, extractable ? "CKA_EXTRACTABLE true" : "CKA_SENSITIVE false");
        return -1;
    }
    CK_ATTRIBUTE ec = { CKA_EC_PARAMS, params, sizeof params };
    rv = f->C_GetAttributeValue(s, *priv, &ec, 1);
    int curve = rv == CKR_OK ? curve_of(params, ec.ulValueLen) : NID_undef;
    if (curve == NID_undef) {
        say(err, errlen, "the key \"%s\" in token \"%s\" is on a curve Vouch does not sign with (P-256 or P-384 only)", shown, t->label);
        return -1;
    }
    rv = find_objects(t, s, CKO_PUBLIC_KEY, id, id_len, NULL, found, &count);
    if (rv != CKR_OK || count != 1) {
        say(err, errlen, "token \"%s\" holds %s public key with id %s (Vouch reads the public point from it)", t->label,
            count == 0 ? "no" : "more than one", idhex);
        return -1;
    }
    *pub = found[0];
    CK_ATTRIBUTE pub_params = { CKA_EC_PARAMS, params, sizeof params };
    if (f->C_GetAttributeValue(s, *pub, &pub_params, 1) != CKR_OK || curve_of(params, pub_params.ulValueLen) != curve) {
        say(err, errlen, "the public key with id %s in token \"%s\" is not on the private key's curve", idhex, t->label);
        return -1;
    }
    rv = read_point(t, s, *pub, point, point_len);
    if (rv != CKR_OK) { say(err, errlen, "token \"%s\": cannot read the public point of key %s: %s", t->label, idhex, vouch_p11_rv_name(rv)); return -1; }
    *nid = curve;
    return 0;
}

static EVP_PKEY *bridge_key(vouch_p11_key *k, int nid) {
    pthread_once(&bridge_once, bridge_setup);
    EC_KEY *ec = EC_KEY_new_by_curve_name(nid);
    if (ec == NULL) return NULL;
    const unsigned char *p = k->point;
    EVP_PKEY *pkey = NULL;
    if (o2i_ECPublicKey(&ec, &p, (long)k->point_len) != NULL && EC_KEY_set_method(ec, bridge_method) == 1
        && EC_KEY_set_ex_data(ec, key_index, k) == 1 && (pkey = EVP_PKEY_new()) != NULL
        && EVP_PKEY_assign_EC_KEY(pkey, ec) == 1) {
        return pkey;
    }
    EVP_PKEY_free(pkey);
    EC_KEY_free(ec);
    return NULL;
}

/* ---- module and token lifecycle ---- */

static CK_RV initialize(vouch_p11_module *m) {
    CK_C_INITIALIZE_ARGS args;
    memset(&args, 0, sizeof args);
    args.flags = CKF_OS_LOCKING_OK;
    CK_RV rv = m->f->C_Initialize(&args);
    if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) rv = CKR_OK;
    m->initialized = rv == CKR_OK;
    return rv;
}

static void initialize_failed(const char *path, CK_RV rv, char *err, size_t errlen) {
    say(err, errlen, "PKCS#11 module %s failed to initialize: %s (for SoftHSM: check SOFTHSM2_CONF and its "
        "directories.tokendir)", path, vouch_p11_rv_name(rv));
}

/* The module runs inside the process that holds the PIN, and its path may come from ca.json: it is
   loaded only when no one but root or this process's user can change it. `resolved` (which has no
   symbolic links, so is what gets loaded) and every directory above it are owned by root or this
   user, and only their owner may write them; a directory with the sticky bit is allowed above an
   existing file (others cannot rename what it holds). 1 when trusted, else 0 with the message. */
static int untrusted(const char *path, const char *file, const char *what, char *err, size_t errlen) {
    say(err, errlen, "PKCS#11 module %s: %s %s; Vouch loads only a module that no one but root or its own user "
        "can change (nor any directory above it)", path, file, what);
    return 0;
}

static int trusted_entry(const char *path, const char *entry, int is_file, int sticky_ok, char *err, size_t errlen) {
    struct stat st;
    if (stat(entry, &st) != 0) return untrusted(path, entry, "cannot be checked", err, errlen);
    if (is_file && !S_ISREG(st.st_mode)) return untrusted(path, entry, "is not a regular file", err, errlen);
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        char what[64];
        snprintf(what, sizeof what, "is owned by uid %u", (unsigned)st.st_uid);
        return untrusted(path, entry, what, err, errlen);
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(sticky_ok && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX))) {
        char what[64];
        snprintf(what, sizeof what, "is writable by others than its owner (mode %04o)", (unsigned)(st.st_mode & 07777));
        return untrusted(path, entry, what, err, errlen);
    }
    return 1;
}

/* `dir` (resolved) and each directory above it. */
static int trusted_directories(const char *path, const char *dir, int sticky_ok, char *err, size_t errlen) {
    char walk[PATH_MAX];
    snprintf(walk, sizeof walk, "%s", dir);
    for (;;) {
        if (!trusted_entry(path, walk[0] ? walk : "/", 0, sticky_ok, err, errlen)) return 0;
        char *slash = strrchr(walk, '/');
        if (slash == NULL || walk[0] == 0 || (slash == walk && walk[1] == 0)) return 1;
        if (slash == walk) slash[1] = 0; else *slash = 0;
        sticky_ok = 1; /* above the first directory, the next entry exists and was checked */
    }
}

static int trusted_module(const char *path, char resolved[PATH_MAX], char *err, size_t errlen) {
    if (path[0] != '/') {
        say(err, errlen, "PKCS#11 module %s: give its absolute path (a bare name is searched for in the library path)", path);
        return 0;
    }
    if (realpath(path, resolved) != NULL) {
        if (!trusted_entry(path, resolved, 1, 0, err, errlen)) return 0;
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", resolved);
        char *slash = strrchr(dir, '/');
        if (slash == dir) slash[1] = 0; else *slash = 0;
        return trusted_directories(path, dir, 1, err, errlen);
    }
    if (errno != ENOENT && errno != ENOTDIR) {
        say(err, errlen, "cannot load PKCS#11 module %s: %s", path, strerror(errno));
        return 0;
    }
    /* Missing: dlopen says so, unless someone else could create it meanwhile. The deepest directory
       that exists must be writable by its owner alone, sticky or not. */
    char above[PATH_MAX], dir[PATH_MAX];
    snprintf(above, sizeof above, "%s", path);
    for (;;) {
        char *slash = strrchr(above, '/');
        if (slash == above) { slash[1] = 0; } else { *slash = 0; }
        if (realpath(above, dir) != NULL) break;
        if (slash == above) return untrusted(path, "/", "cannot be resolved", err, errlen);
    }
    if (!trusted_directories(path, dir, 0, err, errlen)) return 0;
    snprintf(resolved, PATH_MAX, "%s", path);
    return 1;
}

static vouch_p11_module *module_for(const char *path, char *err, size_t errlen) {
    for (vouch_p11_module *m = modules; m != NULL; m = m->next) {
        if (strcmp(m->path, path) == 0) {
            if (!m->initialized) {
                CK_RV rv = initialize(m);
                if (rv != CKR_OK) { initialize_failed(path, rv, err, errlen); return NULL; }
            }
            return m;
        }
    }
    char resolved[PATH_MAX];
    if (!trusted_module(path, resolved, err, errlen)) return NULL;
    void *library = dlopen(resolved, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) { say(err, errlen, "cannot load PKCS#11 module %s: %s", path, dlerror()); return NULL; }
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(library, "C_GetFunctionList");
    CK_FUNCTION_LIST *f = NULL;
    if (get == NULL || get(&f) != CKR_OK || f == NULL) {
        say(err, errlen, "%s is not a PKCS#11 module (no C_GetFunctionList)", path);
        dlclose(library);
        return NULL;
    }
    vouch_p11_module *m = calloc(1, sizeof *m);
    m->path = strdup(path);
    m->library = library;
    m->f = f;
    pthread_rwlock_init(&m->lock, NULL);
    CK_RV rv = initialize(m);
    if (rv != CKR_OK) {
        initialize_failed(path, rv, err, errlen);
        pthread_rwlock_destroy(&m->lock);
        free(m->path);
        free(m);
        dlclose(library);
        return NULL;
    }
    m->next = modules;
    modules = m;
    return m;
}

static void label_of(const CK_TOKEN_INFO *info, char out[33]) {
    memcpy(out, info->label, 32);
    out[32] = 0;
    for (int i = 31; i >= 0 && out[i] == ' '; i--) out[i] = 0;
}

/* The slot whose token has `label`; on failure the message lists the labels seen. */
static CK_RV find_slot(vouch_p11_module *m, const char *label, CK_SLOT_ID *slot, char *err, size_t errlen) {
    CK_SLOT_ID slots[64];
    CK_ULONG n = 64;
    CK_RV rv = m->f->C_GetSlotList(CK_TRUE, slots, &n);
    if (rv == CKR_OK && n > 64) rv = CKR_GENERAL_ERROR; /* more slots than room for: a broken module */
    if (rv != CKR_OK) { say(err, errlen, "PKCS#11 module %s cannot list its slots: %s", m->path, vouch_p11_rv_name(rv)); return rv; }
    char seen[200] = "";
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO info;
        if (m->f->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
        char name[33];
        label_of(&info, name);
        if (strcmp(name, label) == 0) { *slot = slots[i]; return CKR_OK; }
        if (!(info.flags & CKF_TOKEN_INITIALIZED)) continue;
        size_t used = strlen(seen);
        snprintf(seen + used, sizeof seen - used, "%s\"%s\"", used ? ", " : "", name);
    }
    say(err, errlen, "no token labelled \"%s\" in %s (tokens: %s)", label, m->path, seen[0] ? seen : "none");
    return CKR_TOKEN_NOT_PRESENT;
}

enum attach_result { ATTACHED = 0, NO_SUCH_TOKEN, NOT_ATTACHED, PIN_REFUSED };

/* Slot, anchor session, login (one attempt). Caller holds the module lock exclusively. */
static enum attach_result attach(vouch_p11_token *t, char *err, size_t errlen) {
    CK_FUNCTION_LIST *f = t->module->f;
    CK_RV rv = find_slot(t->module, t->label, &t->slot, err, errlen);
    if (rv != CKR_OK) return NO_SUCH_TOKEN;
    rv = f->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->anchor);
    if (rv != CKR_OK) {
        say(err, errlen, "token \"%s\": cannot open a session: %s", t->label, vouch_p11_rv_name(rv));
        t->anchor = CK_INVALID_HANDLE;
        return NOT_ATTACHED;
    }
    rv = f->C_Login(t->anchor, CKU_USER, (CK_UTF8CHAR *)t->pin, (CK_ULONG)t->pin_len);
    if (rv == CKR_USER_ALREADY_LOGGED_IN) rv = CKR_OK;
    if (rv != CKR_OK) {
        if (pin_refusal(rv)) {
            say(err, errlen, "token \"%s\" refused the PIN (%s); not retried (hardware tokens lock after a few failures)",
                t->label, vouch_p11_rv_name(rv));
        } else {
            say(err, errlen, "token \"%s\": login failed: %s", t->label, vouch_p11_rv_name(rv));
        }
        f->C_CloseSession(t->anchor);
        t->anchor = CK_INVALID_HANDLE;
        return pin_refusal(rv) ? PIN_REFUSED : NOT_ATTACHED;
    }
    return ATTACHED;
}

static void free_token(vouch_p11_token *t) {
    for (vouch_p11_key *k = t->keys, *next; k != NULL; k = next) {
        next = k->next;
        EVP_PKEY_free(k->pkey);
        free(k);
    }
    if (t->pin) { OPENSSL_cleanse(t->pin, t->pin_len); free(t->pin); }
    pthread_mutex_destroy(&t->lock);
    pthread_cond_destroy(&t->returned);
    free(t);
}

vouch_p11_token *vouch_p11_open(const char *module_path, const char *token_label, const char *pin, char *err,
                                size_t errlen) {
    if (strlen(token_label) == 0 || strlen(token_label) > 32) {
        say(err, errlen, "a token label is 1 to 32 bytes");
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    vouch_p11_module *m = module_for(module_path, err, errlen);
    if (m == NULL) { pthread_mutex_unlock(&registry_lock); return NULL; }
    vouch_p11_token *t = calloc(1, sizeof *t);
    t->module = m;
    snprintf(t->label, sizeof t->label, "%s", token_label);
    t->pin_len = strlen(pin);
    t->pin = malloc(t->pin_len + 1);
    memcpy(t->pin, pin, t->pin_len + 1);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->returned, NULL);
    t->anchor = CK_INVALID_HANDLE;
    pthread_rwlock_wrlock(&m->lock);
    enum attach_result attached = attach(t, err, errlen);
    if (attached == NO_SUCH_TOKEN && m->tokens == NULL) {
        /* A token made after this process first initialized the module is invisible until it
           initializes again; with no token of ours open, that costs nothing. */
        m->f->C_Finalize(NULL);
        if (initialize(m) == CKR_OK) attached = attach(t, err, errlen);
    }
    if (attached != ATTACHED) {
        pthread_rwlock_unlock(&m->lock);
        if (m->tokens == NULL && m->initialized) { m->f->C_Finalize(NULL); m->initialized = 0; }
        pthread_mutex_unlock(&registry_lock);
        free_token(t);
        return NULL;
    }
    t->next = m->tokens;
    m->tokens = t;
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&registry_lock);
    return t;
}

void vouch_p11_close(vouch_p11_token *t) {
    pthread_mutex_lock(&registry_lock);
    vouch_p11_module *m = t->module;
    pthread_rwlock_wrlock(&m->lock);
    for (vouch_p11_token **p = &m->tokens; *p != NULL; p = &(*p)->next) {
        if (*p == t) { *p = t->next; break; }
    }
    if (m->initialized) {
        for (int i = 0; i < t->idle_count; i++) m->f->C_CloseSession(t->idle[i]);
        if (t->anchor != CK_INVALID_HANDLE) m->f->C_CloseSession(t->anchor);
        /* The module's last token: finalize, so a later open (another token directory in the
           same process, as tests do) initializes afresh. */
        if (m->tokens == NULL) { m->f->C_Finalize(NULL); m->initialized = 0; }
    }
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_unlock(&registry_lock);
    free_token(t);
}

const char *vouch_p11_token_label(const vouch_p11_token *t) { return t->label; }

/* ---- keys ---- */

static vouch_p11_key *key_with_id(vouch_p11_token *t, const unsigned char *id, size_t id_len) {
    for (vouch_p11_key *k = t->keys; k != NULL; k = k->next) {
        if (k->id_len == id_len && memcmp(k->id, id, id_len) == 0) return k;
    }
    return NULL;
}

EVP_PKEY *vouch_p11_find_key(vouch_p11_token *t, const unsigned char *id, size_t id_len, const char *label, char *err,
                        size_t errlen) {
    if (id_len == 0 || id_len > 64) { say(err, errlen, "a key id is 1 to 64 bytes"); return NULL; }
    vouch_p11_module *m = t->module;
    pthread_rwlock_wrlock(&m->lock);
    EVP_PKEY *result = NULL;
    pthread_mutex_lock(&t->lock);
    int state = t->state;
    pthread_mutex_unlock(&t->lock);
    if (state != VOUCH_P11_OK) {
        char reason[256];
        vouch_p11_status(t, NULL, NULL, reason, sizeof reason);
        say(err, errlen, "token \"%s\" is unavailable: %s", t->label, reason);
        goto done;
    }
    CK_OBJECT_HANDLE priv, pub;
    unsigned char point[160];
    size_t point_len = 0;
    int nid = NID_undef;
    if (locate(t, t->anchor, id, id_len, label, &priv, &pub, point, &point_len, &nid, err, errlen) != 0) goto done;
    vouch_p11_key *k = key_with_id(t, id, id_len);
    if (k != NULL) {
        if (k->point_len != point_len || memcmp(k->point, point, point_len) != 0) {
            say(err, errlen, "the key with this id in token \"%s\" changed since this process loaded it", t->label);
            goto done;
        }
        k->priv = priv;
        k->pub = pub;
    } else {
        k = calloc(1, sizeof *k);
        k->token = t;
        memcpy(k->id, id, id_len);
        k->id_len = id_len;
        k->priv = priv;
        k->pub = pub;
        memcpy(k->point, point, point_len);
        k->point_len = point_len;
        k->pkey = bridge_key(k, nid);
        if (k->pkey == NULL) {
            say(err, errlen, "token \"%s\": the public point of the key is not a valid point", t->label);
            free(k);
            goto done;
        }
        k->next = t->keys;
        t->keys = k;
    }
    if (EVP_PKEY_up_ref(k->pkey) == 1) result = k->pkey;
done:
    pthread_rwlock_unlock(&m->lock);
    return result;
}

int vouch_p11_generate(vouch_p11_token *t, int nid, const char *label, const unsigned char *id, size_t id_len,
                       char *err, size_t errlen) {
    const unsigned char *oid = nid == NID_secp384r1 ? P384_OID : P256_OID;
    size_t oid_len = nid == NID_secp384r1 ? sizeof P384_OID : sizeof P256_OID;
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_ATTRIBUTE public_template[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_VERIFY, &yes, sizeof yes }, { CKA_ENCRYPT, &no, sizeof no },
        { CKA_WRAP, &no, sizeof no }, { CKA_EC_PARAMS, (void *)oid, oid_len },
        { CKA_LABEL, (void *)label, strlen(label) }, { CKA_ID, (void *)id, id_len },
    };
    CK_ATTRIBUTE private_template[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_PRIVATE, &yes, sizeof yes }, { CKA_SIGN, &yes, sizeof yes },
        { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_EXTRACTABLE, &no, sizeof no }, { CKA_DECRYPT, &no, sizeof no },
        { CKA_UNWRAP, &no, sizeof no }, { CKA_DERIVE, &no, sizeof no },
        { CKA_LABEL, (void *)label, strlen(label) }, { CKA_ID, (void *)id, id_len },
    };
    vouch_p11_module *m = t->module;
    pthread_rwlock_rdlock(&m->lock);
    CK_SESSION_HANDLE s;
    CK_RV rv = m->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK) {
        CK_MECHANISM mechanism = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_OBJECT_HANDLE pub, priv;
        rv = m->f->C_GenerateKeyPair(s, &mechanism, public_template, sizeof public_template / sizeof *public_template,
                                     private_template, sizeof private_template / sizeof *private_template, &pub, &priv);
        m->f->C_CloseSession(s);
    }
    pthread_rwlock_unlock(&m->lock);
    if (rv != CKR_OK) {
        say(err, errlen, "token \"%s\" cannot generate an EC key pair: %s", t->label, vouch_p11_rv_name(rv));
        return -1;
    }
    return 0;
}

int vouch_p11_destroy(vouch_p11_token *t, const unsigned char *id, size_t id_len, char *err, size_t errlen) {
    vouch_p11_module *m = t->module;
    pthread_rwlock_wrlock(&m->lock);
    CK_SESSION_HANDLE s;
    CK_RV rv = m->f->C_OpenSession(t->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (rv == CKR_OK) {
        CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
        for (int c = 0; c < 2 && rv == CKR_OK; c++) {
            CK_OBJECT_HANDLE found[2];
            CK_ULONG count = 0;
            rv = find_objects(t, s, classes[c], id, id_len, NULL, found, &count);
            for (CK_ULONG i = 0; i < count && rv == CKR_OK; i++) rv = m->f->C_DestroyObject(s, found[i]);
        }
        m->f->C_CloseSession(s);
    }
    vouch_p11_key *k = key_with_id(t, id, id_len);
    if (k != NULL) k->priv = CK_INVALID_HANDLE; /* an EVP_PKEY still held refuses to sign */
    pthread_rwlock_unlock(&m->lock);
    if (rv != CKR_OK) { say(err, errlen, "token \"%s\" cannot delete the key: %s", t->label, vouch_p11_rv_name(rv)); return -1; }
    return 0;
}

/* ---- health ---- */

int vouch_p11_status(vouch_p11_token *t, unsigned long *rv, long *since, char *reason, size_t reason_len) {
    pthread_mutex_lock(&t->lock);
    int state = t->state;
    if (rv) *rv = t->failed_rv;
    if (since) *since = t->failed_since;
    say(reason, reason_len, "%s", t->reason);
    pthread_mutex_unlock(&t->lock);
    return state;
}

int vouch_p11_probe(vouch_p11_token *t) {
    vouch_p11_module *m = t->module;
    pthread_rwlock_rdlock(&m->lock);
    pthread_mutex_lock(&t->lock);
    int state = t->state;
    pthread_mutex_unlock(&t->lock);
    if (state == VOUCH_P11_OK) {
        /* Reading CKA_SIGN fails at once when the token is gone; a session's info does not. */
        CK_RV rv = CKR_OK;
        CK_SESSION_HANDLE s = take_session(t, &rv);
        if (s != CK_INVALID_HANDLE) {
            CK_TOKEN_INFO info;
            rv = m->f->C_GetTokenInfo(t->slot, &info);
            for (vouch_p11_key *k = t->keys; k != NULL && rv == CKR_OK; k = k->next) {
                if (k->priv == CK_INVALID_HANDLE) continue;
                CK_BBOOL sign = CK_FALSE;
                CK_ATTRIBUTE a = { CKA_SIGN, &sign, sizeof sign };
                rv = m->f->C_GetAttributeValue(s, k->priv, &a, 1);
            }
            give_session(t, s, rv);
        }
        if (rv != CKR_OK) mark_failed(t, rv, vouch_p11_rv_name(rv));
    }
    pthread_rwlock_unlock(&m->lock);
    return vouch_p11_status(t, NULL, NULL, NULL, 0);
}

/* Re-initializes the module and brings back each of its tokens that is not refusing its PIN. */
int vouch_p11_recover(vouch_p11_token *asked) {
    vouch_p11_module *m = asked->module;
    pthread_mutex_lock(&registry_lock);
    pthread_rwlock_wrlock(&m->lock);
    if (m->initialized) m->f->C_Finalize(NULL); /* closes every session of the module */
    CK_RV rv = initialize(m);
    for (vouch_p11_token *t = m->tokens; t != NULL; t = t->next) {
        t->idle_count = 0;
        t->open_count = 0;
        t->anchor = CK_INVALID_HANDLE;
        pthread_mutex_lock(&t->lock);
        int state = t->state;
        pthread_mutex_unlock(&t->lock);
        if (state == VOUCH_P11_PIN_REFUSED) continue;
        char reason[256];
        if (rv != CKR_OK) { set_state(t, VOUCH_P11_FAILED, rv, vouch_p11_rv_name(rv)); continue; }
        enum attach_result attached = attach(t, reason, sizeof reason);
        if (attached == PIN_REFUSED) { set_state(t, VOUCH_P11_PIN_REFUSED, CKR_PIN_INCORRECT, reason); continue; }
        if (attached != ATTACHED) { set_state(t, VOUCH_P11_FAILED, CKR_TOKEN_NOT_PRESENT, reason); continue; }
        int ok = 1;
        for (vouch_p11_key *k = t->keys; k != NULL && ok; k = k->next) {
            if (k->priv == CK_INVALID_HANDLE) continue;
            CK_OBJECT_HANDLE priv, pub;
            unsigned char point[160];
            size_t point_len = 0;
            int nid;
            if (locate(t, t->anchor, k->id, k->id_len, NULL, &priv, &pub, point, &point_len, &nid, reason, sizeof reason) != 0) {
                ok = 0;
            } else if (point_len != k->point_len || memcmp(point, k->point, point_len) != 0) {
                snprintf(reason, sizeof reason, "a key came back with another public key; Vouch will not sign with it");
                ok = 0;
            } else {
                k->priv = priv;
                k->pub = pub;
            }
        }
        if (ok) set_state(t, VOUCH_P11_OK, CKR_OK, "");
        else set_state(t, VOUCH_P11_FAILED, CKR_KEY_HANDLE_INVALID, reason);
    }
    pthread_rwlock_unlock(&m->lock);
    /* The same public point is not proof of the same private key: each key signs once and the
       signature must verify, as at first load, before the token counts as back. */
    for (vouch_p11_token *t = m->tokens; t != NULL; t = t->next) {
        if (vouch_p11_status(t, NULL, NULL, NULL, 0) != VOUCH_P11_OK) continue;
        for (vouch_p11_key *k = t->keys; k != NULL; k = k->next) {
            if (k->priv == CK_INVALID_HANDLE || vouch_p11_self_test(k->pkey)) continue;
            vouch_p11_take_sign_error();
            ERR_clear_error();
            set_state(t, VOUCH_P11_FAILED, CKR_KEY_HANDLE_INVALID,
                      "a key came back whose signatures do not verify with its public key; Vouch will not sign with it");
            break;
        }
    }
    pthread_mutex_unlock(&registry_lock);
    return vouch_p11_status(asked, NULL, NULL, NULL, 0);
}

int vouch_p11_is_token_key(EVP_PKEY *pkey, const char **label) {
    if (key_index < 0 || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC) return 0;
    const EC_KEY *ec = EVP_PKEY_get0_EC_KEY(pkey);
    vouch_p11_key *k = ec ? EC_KEY_get_ex_data(ec, key_index) : NULL;
    if (k == NULL) return 0;
    if (label) *label = k->token->label;
    return 1;
}

int vouch_p11_self_test(EVP_PKEY *key) {
    unsigned char message[32], signature[160];
    size_t length = sizeof signature;
    if (RAND_bytes(message, sizeof message) != 1) return 0;
    EVP_MD_CTX *sign = EVP_MD_CTX_new(), *verify = EVP_MD_CTX_new();
    int ok = sign != NULL && verify != NULL
        && EVP_DigestSignInit(sign, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestSign(sign, signature, &length, message, sizeof message) == 1
        && EVP_DigestVerifyInit(verify, NULL, EVP_sha256(), NULL, key) == 1
        && EVP_DigestVerify(verify, signature, length, message, sizeof message) == 1;
    EVP_MD_CTX_free(sign);
    EVP_MD_CTX_free(verify);
    return ok;
}
