# sikkermail gateway. Spool and state are volumes: a container restart resumes from them.
FROM python:3.11-slim

RUN useradd --system --home-dir /var/lib/sikkermail --shell /usr/sbin/nologin sikkermail \
 && mkdir -p /etc/sikkermail /var/spool/sikkermail /var/lib/sikkermail \
 && chown sikkermail:sikkermail /var/spool/sikkermail /var/lib/sikkermail \
 && chmod 0700 /var/spool/sikkermail /var/lib/sikkermail

WORKDIR /opt/sikkermail
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY policy ./policy
COPY certdir ./certdir
COPY tlsprobe ./tlsprobe
RUN pip install --no-cache-dir . 
COPY docker/sikkermail.toml /etc/sikkermail/sikkermail.toml
COPY policy.toml /etc/sikkermail/policy.toml

USER sikkermail
# Everything the gateway writes lives in these two (docker/sikkermail.toml): the spool,
# and the state - audit.db, quarantine/, certs/, probecache.db, certcache.db.
VOLUME ["/var/spool/sikkermail", "/var/lib/sikkermail"]
EXPOSE 10025 9125
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9125/healthz', timeout=4).status == 200 else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["sikkermail", "-c", "/etc/sikkermail/sikkermail.toml"]
CMD ["serve"]
