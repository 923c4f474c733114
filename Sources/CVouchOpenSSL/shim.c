#include "vouch_openssl.h"

void vouch_openssl_free(void *ptr) { OPENSSL_free(ptr); }

long vouch_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

GENERAL_NAMES *vouch_x509_subject_alt_names(const X509 *cert) {
    return X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
}

GENERAL_NAMES *vouch_req_subject_alt_names(const X509_REQ *req) {
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions((X509_REQ *)req);
    if (exts == NULL) return NULL;
    GENERAL_NAMES *names = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return names;
}

int vouch_general_names_count(const GENERAL_NAMES *names) {
    return names == NULL ? 0 : sk_GENERAL_NAME_num(names);
}

int vouch_general_name_at(const GENERAL_NAMES *names, int i, const unsigned char **data, int *length) {
    const GENERAL_NAME *name = sk_GENERAL_NAME_value(names, i);
    const ASN1_STRING *value = NULL;
    switch (name->type) {
    case GEN_URI: value = name->d.uniformResourceIdentifier; break;
    case GEN_DNS: value = name->d.dNSName; break;
    case GEN_EMAIL: value = name->d.rfc822Name; break;
    case GEN_IPADD: value = name->d.iPAddress; break;
    default: return -1;
    }
    *data = ASN1_STRING_get0_data(value);
    *length = ASN1_STRING_length(value);
    return name->type;
}

void vouch_general_names_free(GENERAL_NAMES *names) { GENERAL_NAMES_free(names); }

int vouch_req_add_extension(X509_REQ *req, X509_EXTENSION *ext) {
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    if (exts == NULL) return 0;
    int ok = sk_X509_EXTENSION_push(exts, ext) > 0 && X509_REQ_add_extensions(req, exts) == 1;
    sk_X509_EXTENSION_free(exts);
    return ok;
}

int vouch_req_extension_count(const X509_REQ *req) {
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions((X509_REQ *)req);
    if (exts == NULL) return 0;
    int n = sk_X509_EXTENSION_num(exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return n;
}
