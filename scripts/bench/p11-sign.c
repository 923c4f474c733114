/* The crypto ceiling of a CA key in a PKCS#11 token next to the same key kind in memory, one thread each.
 *
 * Build and run (bench.sh does):
 *   cc -O2 -I Sources/CVouchOpenSSL/pkcs11 p11-sign.c -lcrypto -ldl -o p11-sign
 *   SOFTHSM2_CONF=... ./p11-sign MODULE TOKEN_LABEL PIN_FILE [SECONDS]
 *
 * Prints signatures per second and CPU microseconds per signature (this process's user + system time,
 * which includes the module's work, since a PKCS#11 module runs inside the caller) for
 *   - EVP_DigestSign, SHA-256 + ECDSA P-256, with a key held in memory as Vouch holds a key read from a file;
 *   - C_SignInit + C_Sign CKM_ECDSA in the token over the SHA-256 digest, the r||s result turned into a DER
 *     ECDSA-Sig-Value: the work Vouch's token bridge does per signature. The key is a new P-256 token key
 *     (sensitive, never extractable), removed again at the end; its first signature is verified with its
 *     public key before timing.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include "pkcs11.h"

static CK_FUNCTION_LIST *p11;
static CK_SESSION_HANDLE session;
static CK_OBJECT_HANDLE private_key, public_key;
static unsigned char message[300];

static double clock_seconds(clockid_t clock) {
    struct timespec now;
    clock_gettime(clock, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void check(CK_RV rv, const char *step) {
    if (rv != CKR_OK) {
        fprintf(stderr, "p11-sign: %s -> CKR 0x%lx\n", step, (unsigned long)rv);
        exit(2);
    }
}

/* The slot whose token carries `label` (blank-padded to 32 bytes in CK_TOKEN_INFO). */
static CK_SLOT_ID find_slot(const char *label) {
    CK_ULONG count = 0;
    check(p11->C_GetSlotList(CK_TRUE, NULL, &count), "C_GetSlotList");
    CK_SLOT_ID *slots = calloc(count ? count : 1, sizeof *slots);
    check(p11->C_GetSlotList(CK_TRUE, slots, &count), "C_GetSlotList");
    for (CK_ULONG i = 0; i < count; i++) {
        CK_TOKEN_INFO info;
        if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK) continue;
        char padded[33];
        memcpy(padded, info.label, 32);
        padded[32] = 0;
        for (int j = 31; j >= 0 && padded[j] == ' '; j--) padded[j] = 0;
        if (strcmp(padded, label) == 0) {
            CK_SLOT_ID slot = slots[i];
            free(slots);
            return slot;
        }
    }
    fprintf(stderr, "p11-sign: no token labelled \"%s\"\n", label);
    exit(2);
}

static void read_pin(const char *path, char *pin, size_t size) {
    FILE *file = fopen(path, "r");
    if (file == NULL || fgets(pin, (int)size, file) == NULL) {
        fprintf(stderr, "p11-sign: cannot read the PIN file %s\n", path);
        exit(2);
    }
    fclose(file);
    pin[strcspn(pin, "\n")] = 0;
}

static void generate_token_key(void) {
    static const unsigned char p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    static char label[] = "p11-sign bench key";
    CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
    CK_MECHANISM mechanism = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_ATTRIBUTE public_template[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_VERIFY, &yes, sizeof yes },
        { CKA_EC_PARAMS, (void *)p256, sizeof p256 }, { CKA_LABEL, label, strlen(label) },
    };
    CK_ATTRIBUTE private_template[] = {
        { CKA_TOKEN, &yes, sizeof yes }, { CKA_PRIVATE, &yes, sizeof yes }, { CKA_SIGN, &yes, sizeof yes },
        { CKA_SENSITIVE, &yes, sizeof yes }, { CKA_EXTRACTABLE, &no, sizeof no }, { CKA_LABEL, label, strlen(label) },
    };
    check(p11->C_GenerateKeyPair(session, &mechanism, public_template, 4, private_template, 6, &public_key, &private_key),
          "C_GenerateKeyPair");
}

/* CKA_EC_POINT is a DER OCTET STRING around the uncompressed point. */
static EVP_PKEY *token_public_key(void) {
    unsigned char buffer[200];
    CK_ATTRIBUTE point = { CKA_EC_POINT, buffer, sizeof buffer };
    check(p11->C_GetAttributeValue(session, public_key, &point, 1), "C_GetAttributeValue(CKA_EC_POINT)");
    const unsigned char *cursor = buffer;
    ASN1_OCTET_STRING *octets = d2i_ASN1_OCTET_STRING(NULL, &cursor, (long)point.ulValueLen);
    OSSL_PARAM_BLD *builder = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(builder, OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0);
    OSSL_PARAM_BLD_push_octet_string(builder, OSSL_PKEY_PARAM_PUB_KEY, octets->data, (size_t)octets->length);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(builder);
    EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    EVP_PKEY *key = NULL;
    if (EVP_PKEY_fromdata_init(context) != 1 || EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
    EVP_PKEY_CTX_free(context);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(builder);
    ASN1_OCTET_STRING_free(octets);
    return key;
}

/* One token signature of `message` as DER; returns its length, 0 on failure. */
static size_t token_sign(unsigned char *der, size_t size) {
    unsigned char digest[32], raw[64];
    unsigned int digest_length = 0;
    CK_ULONG raw_length = sizeof raw;
    CK_MECHANISM mechanism = { CKM_ECDSA, NULL, 0 };
    EVP_Digest(message, sizeof message, digest, &digest_length, EVP_sha256(), NULL);
    CK_RV rv = p11->C_SignInit(session, &mechanism, private_key);
    if (rv == CKR_OK) rv = p11->C_Sign(session, digest, digest_length, raw, &raw_length);
    if (rv != CKR_OK || raw_length != 64) {
        fprintf(stderr, "p11-sign: C_Sign -> CKR 0x%lx\n", (unsigned long)rv);
        return 0;
    }
    ECDSA_SIG *signature = ECDSA_SIG_new();
    ECDSA_SIG_set0(signature, BN_bin2bn(raw, 32, NULL), BN_bin2bn(raw + 32, 32, NULL));
    int length = i2d_ECDSA_SIG(signature, NULL);
    unsigned char *cursor = der;
    if (length <= 0 || (size_t)length > size) length = 0; else i2d_ECDSA_SIG(signature, &cursor);
    ECDSA_SIG_free(signature);
    return (size_t)length;
}

static size_t file_sign(EVP_PKEY *key, unsigned char *der, size_t size) {
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    size_t length = size;
    int ok = EVP_DigestSignInit(context, NULL, EVP_sha256(), NULL, key) == 1
          && EVP_DigestSign(context, der, &length, message, sizeof message) == 1;
    EVP_MD_CTX_free(context);
    return ok ? length : 0;
}

static int verifies(EVP_PKEY *key, const unsigned char *der, size_t length) {
    EVP_MD_CTX *context = EVP_MD_CTX_new();
    int ok = EVP_DigestVerifyInit(context, NULL, EVP_sha256(), NULL, key) == 1
          && EVP_DigestVerify(context, der, length, message, sizeof message) == 1;
    EVP_MD_CTX_free(context);
    return ok;
}

/* Signs for `seconds` of wall time and prints the rate and the CPU per signature. */
static void run(const char *name, EVP_PKEY *file_key, double seconds) {
    unsigned char der[128];
    long count = 0;
    double wall = clock_seconds(CLOCK_MONOTONIC), cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID);
    double end = wall + seconds;
    do {
        for (int i = 0; i < 100; i++) {
            if ((file_key ? file_sign(file_key, der, sizeof der) : token_sign(der, sizeof der)) == 0) exit(3);
        }
        count += 100;
    } while (clock_seconds(CLOCK_MONOTONIC) < end);
    wall = clock_seconds(CLOCK_MONOTONIC) - wall;
    cpu = clock_seconds(CLOCK_PROCESS_CPUTIME_ID) - cpu;
    printf("- %s, 1 thread: %.0f signatures/s, %.1f µs CPU per signature\n", name, count / wall, cpu / count * 1e6);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: p11-sign MODULE TOKEN_LABEL PIN_FILE [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 4 ? atof(argv[4]) : 3;
    memset(message, 'x', sizeof message);
    char pin[256];
    read_pin(argv[3], pin, sizeof pin);

    void *module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (module == NULL) {
        fprintf(stderr, "p11-sign: %s\n", dlerror());
        return 2;
    }
    CK_C_GetFunctionList get_function_list = (CK_C_GetFunctionList)dlsym(module, "C_GetFunctionList");
    if (get_function_list == NULL) {
        fprintf(stderr, "p11-sign: no C_GetFunctionList in %s\n", argv[1]);
        return 2;
    }
    check(get_function_list(&p11), "C_GetFunctionList");
    CK_C_INITIALIZE_ARGS arguments;
    memset(&arguments, 0, sizeof arguments);
    arguments.flags = CKF_OS_LOCKING_OK;
    check(p11->C_Initialize(&arguments), "C_Initialize");
    CK_SLOT_ID slot = find_slot(argv[2]);
    check(p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &session), "C_OpenSession");
    check(p11->C_Login(session, CKU_USER, (CK_UTF8CHAR *)pin, strlen(pin)), "C_Login");
    generate_token_key();

    EVP_PKEY *token_public = token_public_key();
    unsigned char der[128];
    size_t length = token_sign(der, sizeof der);
    if (token_public == NULL || length == 0 || !verifies(token_public, der, length)) {
        fprintf(stderr, "p11-sign: the token's signature does not verify with its public key\n");
        return 3;
    }
    EVP_PKEY *file_key = EVP_EC_gen("P-256");
    length = file_sign(file_key, der, sizeof der);
    if (length == 0 || !verifies(file_key, der, length)) {
        fprintf(stderr, "p11-sign: the file key's signature does not verify\n");
        return 3;
    }

    run("file key, EVP_DigestSign (SHA-256 + ECDSA P-256)", file_key, seconds);
    run("token key, C_Sign CKM_ECDSA (SHA-256 in the caller, r||s to DER)", NULL, seconds);

    p11->C_DestroyObject(session, private_key);
    p11->C_DestroyObject(session, public_key);
    p11->C_Logout(session);
    p11->C_CloseSession(session);
    p11->C_Finalize(NULL);
    EVP_PKEY_free(file_key);
    EVP_PKEY_free(token_public);
    return 0;
}
