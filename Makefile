# scheduler: build, test and install as a systemd service.
#   make build                  bin/scheduler
#   make test                   go test -race ./...
#   sudo make install           binary, unit, example config (kept if present), docs
#   make install DESTDIR=/tmp/pkg PREFIX=/usr   staged install for packaging
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
DOCDIR     ?= $(PREFIX)/share/doc/scheduler
SYSCONFDIR ?= /etc
UNITDIR    ?= $(SYSCONFDIR)/systemd/system
DESTDIR    ?=
GO         ?= go
# go.mod needs go1.27.3 (it fixes the standard library's HTTPS-path vulnerabilities); a
# machine's own Go fetches it through the module proxy when told to (make GOTOOLCHAIN=... overrides).
export GOTOOLCHAIN = go1.27.3
INSTALL    ?= install

.PHONY: build test install systemd-check clean

build:
	$(GO) build -trimpath -o bin/scheduler ./cmd/scheduler

test:
	$(GO) test -race ./...

# The unit names /usr/local/bin/scheduler; other prefixes are substituted.
install: build
	$(INSTALL) -D -m 0755 bin/scheduler $(DESTDIR)$(BINDIR)/scheduler
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/scheduler|$(BINDIR)/scheduler|g' \
	    -e 's|/usr/local/share/doc/scheduler|$(DOCDIR)|g' \
	    systemd/scheduler.service >$(DESTDIR)$(UNITDIR)/scheduler.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/scheduler.service
	$(INSTALL) -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/scheduler
	$(INSTALL) -d -m 0700 $(DESTDIR)$(SYSCONFDIR)/scheduler/credentials
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/scheduler/config.yaml ]; then \
		echo "kept existing $(DESTDIR)$(SYSCONFDIR)/scheduler/config.yaml"; \
	else \
		$(INSTALL) -m 0644 configs/example.yaml $(DESTDIR)$(SYSCONFDIR)/scheduler/config.yaml; \
		echo "installed example schedule $(DESTDIR)$(SYSCONFDIR)/scheduler/config.yaml"; \
	fi
	$(INSTALL) -D -m 0644 systemd/README.md $(DESTDIR)$(DOCDIR)/README.md
	@echo
	@echo "Next (see $(DOCDIR)/README.md):"
	@echo "  1. edit $(SYSCONFDIR)/scheduler/config.yaml; store each secret it names with"
	@echo "       systemd-creds encrypt --name=NAME - $(SYSCONFDIR)/scheduler/credentials/NAME.cred"
	@echo "     and add LoadCredentialEncrypted=NAME:$(SYSCONFDIR)/scheduler/credentials/NAME.cred with"
	@echo "       systemctl edit scheduler"
	@echo "  2. $(BINDIR)/scheduler validate --config $(SYSCONFDIR)/scheduler/config.yaml"
	@echo "  3. systemctl daemon-reload"
	@echo "  4. systemctl enable --now scheduler"
	@echo "  5. systemctl status scheduler; journalctl -u scheduler -f"
	@echo "  after edits: systemctl reload scheduler"

systemd-check:
	.ci/systemd-check

clean:
	rm -rf bin
