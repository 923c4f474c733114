#include "vouch_openssl.h"

void vouch_openssl_free(void *ptr) { OPENSSL_free(ptr); }

long vouch_bio_mem_data(BIO *bio, char **data) { return BIO_get_mem_data(bio, data); }

GENERAL_NAMES *vouch_x509_subject_alt_names(const X509 *cert) {
    return X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
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

OCSP_REQUEST *vouch_ocsp_request_parse(const unsigned char *der, long length) {
    return vouch_d2i_whole(ASN1_ITEM_rptr(OCSP_REQUEST), der, length);
}

int vouch_ocsp_request_count(OCSP_REQUEST *request) { return OCSP_request_onereq_count(request); }

const ASN1_INTEGER *vouch_ocsp_request_serial(OCSP_REQUEST *request, int i, X509 *issuer, int *issued_by_us) {
    OCSP_CERTID *id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(request, i));
    ASN1_OBJECT *digest_object = NULL;
    ASN1_INTEGER *serial = NULL;
    if (id == NULL || OCSP_id_get0_info(NULL, &digest_object, NULL, &serial, id) != 1) return NULL;
    const EVP_MD *digest = EVP_get_digestbyobj(digest_object);
    *issued_by_us = 0;
    if (digest != NULL) {
        OCSP_CERTID *ours = OCSP_cert_id_new(digest, X509_get_subject_name(issuer), X509_get0_pubkey_bitstr(issuer), serial);
        if (ours != NULL) {
            *issued_by_us = OCSP_id_issuer_cmp(ours, id) == 0;
            OCSP_CERTID_free(ours);
        }
    }
    return serial;
}

int vouch_ocsp_response_build(OCSP_REQUEST *request, X509 *signer, EVP_PKEY *key, const int *statuses,
                              const long *revoked_at, const int *reasons, long this_update, long next_update,
                              unsigned char **out) {
    int result = -1;
    OCSP_BASICRESP *basic = OCSP_BASICRESP_new();
    ASN1_TIME *this_time = ASN1_TIME_set(NULL, (time_t)this_update);
    ASN1_TIME *next_time = ASN1_TIME_set(NULL, (time_t)next_update);
    OCSP_RESPONSE *response = NULL;
    if (basic == NULL || this_time == NULL || next_time == NULL) goto done;
    int count = OCSP_request_onereq_count(request);
    for (int i = 0; i < count; i++) {
        OCSP_CERTID *id = OCSP_onereq_get0_id(OCSP_request_onereq_get0(request, i));
        ASN1_TIME *revocation = NULL;
        if (statuses[i] == V_OCSP_CERTSTATUS_REVOKED) revocation = ASN1_TIME_set(NULL, (time_t)revoked_at[i]);
        OCSP_SINGLERESP *single = OCSP_basic_add1_status(basic, id, statuses[i],
                                                         statuses[i] == V_OCSP_CERTSTATUS_REVOKED ? reasons[i] : -1,
                                                         revocation, this_time, next_time);
        ASN1_TIME_free(revocation);
        if (single == NULL) goto done;
    }
    OCSP_copy_nonce(basic, request);
    if (OCSP_basic_sign(basic, signer, key, EVP_sha256(), NULL, 0) != 1) goto done;
    response = OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic);
    if (response == NULL) goto done;
    *out = NULL;
    result = i2d_OCSP_RESPONSE(response, out);
done:
    OCSP_RESPONSE_free(response);
    OCSP_BASICRESP_free(basic);
    ASN1_TIME_free(this_time);
    ASN1_TIME_free(next_time);
    return result;
}

int vouch_ocsp_error_response(int status, unsigned char **out) {
    OCSP_RESPONSE *response = OCSP_response_create(status, NULL);
    if (response == NULL) return -1;
    *out = NULL;
    int length = i2d_OCSP_RESPONSE(response, out);
    OCSP_RESPONSE_free(response);
    return length;
}

/* The certificates of a PEM text, in order (an empty text gives none); NULL when one does not parse. */
static STACK_OF(X509) *vouch_certificates_from_pem(const char *pem) {
    STACK_OF(X509) *certs = sk_X509_new_null();
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *cert;
    if (certs == NULL || bio == NULL) goto fail;
    ERR_set_mark();
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (!sk_X509_push(certs, cert)) {
            X509_free(cert);
            ERR_clear_last_mark();
            goto fail;
        }
    }
    /* The end of the text reads as "no start line"; anything else is a broken certificate. */
    unsigned long err = ERR_peek_last_error();
    if (err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
        ERR_clear_last_mark();
        goto fail;
    }
    ERR_pop_to_mark();
    BIO_free(bio);
    return certs;
fail:
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

static int vouch_pkcs12_der(PKCS12 *p12, const char *password, unsigned char **out) {
    *out = NULL;
    if (!PKCS12_set_mac(p12, password, -1, NULL, 0, PKCS12_DEFAULT_ITER, EVP_sha256())) return -1;
    int length = i2d_PKCS12(p12, out);
    return length > 0 ? length : -1;
}

int vouch_pkcs12_keystore(const char *key_pem, const char *cert_pem, const char *chain_pem, const char *password,
                          const char *alias, unsigned char **out) {
    int length = -1;
    BIO *keyBio = BIO_new_mem_buf(key_pem, -1), *certBio = BIO_new_mem_buf(cert_pem, -1);
    EVP_PKEY *key = keyBio != NULL ? PEM_read_bio_PrivateKey(keyBio, NULL, NULL, NULL) : NULL;
    X509 *cert = certBio != NULL ? PEM_read_bio_X509(certBio, NULL, NULL, NULL) : NULL;
    STACK_OF(X509) *chain = vouch_certificates_from_pem(chain_pem);
    PKCS12 *p12 = NULL;
    *out = NULL;
    /* mac_iter -1: no MAC here, set with SHA-256 by vouch_pkcs12_der. */
    if (key != NULL && cert != NULL && chain != NULL
        && (p12 = PKCS12_create(password, alias, key, cert, chain, NID_aes_256_cbc, NID_aes_256_cbc, PKCS12_DEFAULT_ITER, -1, 0)) != NULL)
        length = vouch_pkcs12_der(p12, password, out);
    PKCS12_free(p12);
    sk_X509_pop_free(chain, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    BIO_free(certBio);
    BIO_free(keyBio);
    return length;
}

int vouch_pkcs12_truststore(const char *certs_pem, const char *password, const char *alias_prefix, unsigned char **out) {
    int length = -1;
    STACK_OF(X509) *certs = vouch_certificates_from_pem(certs_pem);
    STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
    STACK_OF(PKCS7) *safes = NULL;
    PKCS12 *p12 = NULL;
    /* Oracle's trusted-key-usage attribute by its dotted form (OBJ_txt2obj inside): nothing is
       added to OpenSSL's process-wide object table, as OBJ_create would. */
    const char *trusted = "2.16.840.1.113894.746875.1.1";
    int ok = certs != NULL && sk_X509_num(certs) > 0;
    *out = NULL;
    for (int i = 0; ok && i < sk_X509_num(certs); i++) {
        X509 *cert = sk_X509_value(certs, i);
        BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
        char *hex = serial != NULL ? BN_bn2hex(serial) : NULL;
        char alias[160];
        PKCS12_SAFEBAG *bag = NULL;
        if (hex != NULL) {
            for (char *c = hex; *c != '\0'; c++) if (*c >= 'A' && *c <= 'F') *c = (char)(*c - 'A' + 'a');
            snprintf(alias, sizeof alias, "%s%s", alias_prefix, hex);
            bag = PKCS12_add_cert(&bags, cert);
        }
        ok = bag != NULL && PKCS12_add_friendlyname_utf8(bag, alias, -1)
            && PKCS12_add1_attr_by_txt(bag, trusted, V_ASN1_OBJECT, (const unsigned char *)OBJ_nid2obj(NID_anyExtendedKeyUsage), -1);
        OPENSSL_free(hex);
        BN_free(serial);
    }
    if (ok && PKCS12_add_safe(&safes, bags, NID_aes_256_cbc, PKCS12_DEFAULT_ITER, password)
        && (p12 = PKCS12_add_safes(safes, 0)) != NULL)
        length = vouch_pkcs12_der(p12, password, out);
    PKCS12_free(p12);
    sk_PKCS7_pop_free(safes, PKCS7_free);
    sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
    sk_X509_pop_free(certs, X509_free);
    return length;
}
