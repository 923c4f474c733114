/* What parsing one CSR costs in the system OpenSSL, next to Vouch's own parser (csr.c) and to
 * verifying the request.
 *
 * Build and run (bench.sh does), from the repository root:
 *   cc -O2 -I Sources/CVouchOpenSSL/include scripts/bench/csr-parse.c Sources/CVouchOpenSSL/csr.c -lcrypto -o csr-parse
 *   ./csr-parse CSR.der
 *
 * Prints microseconds per call for
 *   - d2i_X509_REQ, which decodes the SubjectPublicKeyInfo into an EVP_PKEY through OpenSSL 3's
 *     provider decoder lookup,
 *   - d2i_X509_REQ + X509_REQ_verify, what the CA did with each request before csr.c,
 *   - vouch_csr_parse + vouch_spki_public_key, Vouch's templates with the key imported directly,
 *   - vouch_csr_parse + vouch_spki_public_key + vouch_csr_verify, what the CA does with each request now.
 */
#include <openssl/x509.h>
#include <stdio.h>
#include <time.h>
#include "vouch_openssl.h"

enum { ROUNDS = 20000 };

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static X509_REQ *parse(const unsigned char *der, long length) {
    const unsigned char *cursor = der;
    return d2i_X509_REQ(NULL, &cursor, length);
}

/// One request the way OpenSSL reads it; 0 when it does not parse or (with `verify`) verify.
static int openssl_path(const unsigned char *der, long length, int verify) {
    X509_REQ *request = parse(der, length);
    int ok = request != NULL && (!verify || X509_REQ_verify(request, X509_REQ_get0_pubkey(request)) == 1);
    X509_REQ_free(request);
    return ok;
}

/// One request the way Vouch reads it (CertificateSigningRequest.init(der:)).
static int vouch_path(const unsigned char *der, long length, int verify) {
    VOUCH_CSR *request = vouch_csr_parse(der, length);
    EVP_PKEY *key = request != NULL ? vouch_spki_public_key(vouch_csr_get0_spki(request)) : NULL;
    int ok = key != NULL && (!verify || vouch_csr_verify(request, key) == 1);
    EVP_PKEY_free(key);
    VOUCH_CSR_free(request);
    return ok;
}

/// Microseconds per call of `path` over ROUNDS calls; negative if one call failed.
static double microseconds(int (*path)(const unsigned char *, long, int), const unsigned char *der, long length, int verify) {
    double start = seconds();
    for (int i = 0; i < ROUNDS; i++) {
        if (!path(der, length, verify)) return -1;
    }
    return (seconds() - start) / ROUNDS * 1e6;
}

int main(int argc, char **argv) {
    static unsigned char der[16384];
    FILE *file = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (file == NULL) { fprintf(stderr, "usage: csr-parse CSR.der\n"); return 2; }
    long length = (long)fread(der, 1, sizeof der, file);
    fclose(file);
    if (!openssl_path(der, length, 1) || !vouch_path(der, length, 1)) {
        fprintf(stderr, "csr-parse: %s is not a DER CSR that both parsers read and verify\n", argv[1]);
        return 2;
    }
    double opensslParse = microseconds(openssl_path, der, length, 0);
    double opensslVerify = microseconds(openssl_path, der, length, 1);
    double vouchParse = microseconds(vouch_path, der, length, 0);
    double vouchVerify = microseconds(vouch_path, der, length, 1);
    printf("- d2i_X509_REQ: %.1f us per call; with X509_REQ_verify: %.1f us\n", opensslParse, opensslVerify);
    printf("- Vouch (csr.c) vouch_csr_parse + vouch_spki_public_key: %.1f us per call; with vouch_csr_verify: %.1f us\n",
           vouchParse, vouchVerify);
    return 0;
}
