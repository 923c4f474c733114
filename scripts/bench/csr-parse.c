/* What parsing one CSR costs in the system OpenSSL, next to what verifying it costs.
 *
 * Build and run (bench.sh does): cc -O2 csr-parse.c -lcrypto -o csr-parse && ./csr-parse CSR.der
 *
 * Prints microseconds per call for
 *   - d2i_X509_REQ, which decodes the SubjectPublicKeyInfo into an EVP_PKEY through OpenSSL 3's
 *     provider decoder lookup,
 *   - d2i_X509_REQ + X509_REQ_verify, what the CA does with each request,
 *   - EVP_PKEY_fromdata on the same P-256 point, the way around the decoder lookup.
 */
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <time.h>

static double seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static X509_REQ *parse(const unsigned char *der, long length) {
    const unsigned char *cursor = der;
    return d2i_X509_REQ(NULL, &cursor, length);
}

int main(int argc, char **argv) {
    enum { ROUNDS = 20000 };
    unsigned char der[16384];
    FILE *file = argc > 1 ? fopen(argv[1], "rb") : NULL;
    if (file == NULL) { fprintf(stderr, "usage: csr-parse CSR.der (a P-256 CSR)\n"); return 2; }
    long length = (long)fread(der, 1, sizeof der, file);
    fclose(file);
    X509_REQ *sample = parse(der, length);
    const unsigned char *point = NULL;
    int pointLength = 0;
    if (sample == NULL || !X509_PUBKEY_get0_param(NULL, &point, &pointLength, NULL, X509_REQ_get_X509_PUBKEY(sample))) {
        fprintf(stderr, "csr-parse: %s is not a DER CSR\n", argv[1]);
        return 2;
    }

    double start = seconds();
    for (int i = 0; i < ROUNDS; i++) X509_REQ_free(parse(der, length));
    double parsed = seconds();
    for (int i = 0; i < ROUNDS; i++) {
        X509_REQ *request = parse(der, length);
        if (X509_REQ_verify(request, X509_REQ_get0_pubkey(request)) != 1) { fprintf(stderr, "verify failed\n"); return 1; }
        X509_REQ_free(request);
    }
    double verified = seconds();
    for (int i = 0; i < ROUNDS; i++) {
        EVP_PKEY_CTX *context = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
        EVP_PKEY *key = NULL;
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0),
            OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)point, (size_t)pointLength),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_PKEY_fromdata_init(context) != 1 || EVP_PKEY_fromdata(context, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
            fprintf(stderr, "EVP_PKEY_fromdata failed\n");
            return 1;
        }
        EVP_PKEY_free(key);
        EVP_PKEY_CTX_free(context);
    }
    double imported = seconds();
    X509_REQ_free(sample);
    printf("- d2i_X509_REQ (P-256 CSR): %.1f us per call; with X509_REQ_verify: %.1f us; "
           "the same key through EVP_PKEY_fromdata: %.1f us\n",
           (parsed - start) / ROUNDS * 1e6, (verified - parsed) / ROUNDS * 1e6, (imported - verified) / ROUNDS * 1e6);
    return 0;
}
