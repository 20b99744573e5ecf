#include "tests/testing/gpgsm.h"

#include <sys/stat.h>
#include <unistd.h>

#include <vector>

namespace smime::testing {

void MakeGnupgHome(const std::string& home, const std::string& trustlist) {
  ::mkdir(home.c_str(), 0700);
  WriteFile(home + "/gpg-agent.conf", "allow-loopback-pinentry\n");
  WriteFile(home + "/gpgsm.conf", "disable-crl-checks\n");
  if (!trustlist.empty()) WriteFile(home + "/trustlist.txt", trustlist);
}

CommandResult GpgsmImportKey(const std::string& home, const std::string& key_pem, const std::string& cert_pem,
                             const std::string& chain_pem) {
  const std::string p12 = home + "/import.p12";
  const std::string password = kGpgsmKeyPassphrase;
  CommandResult result;
  for (int attempt = 0; attempt < 5; ++attempt) {
    std::vector<std::string> exp = {"openssl", "pkcs12", "-export", "-certpbe", "PBE-SHA1-3DES", "-keypbe",
                                    "PBE-SHA1-3DES", "-macalg", "sha1", "-inkey", key_pem, "-in", cert_pem,
                                    "-passout", "pass:" + password, "-out", p12};
    if (!chain_pem.empty()) exp.insert(exp.end(), {"-certfile", chain_pem});
    result = RunCommand(exp);
    if (result.exit_code != 0) return result;
    RunOptions o = WithEnv({{"GNUPGHOME", home}});
    o.stdin_data = password + "\n";
    result = RunCommand({"gpgsm", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
                         "--import", p12},
                        o);
    if (result.err.find("error parsing or decrypting the PKCS#12 file") == std::string::npos) break;
  }
  ::unlink(p12.c_str());
  return result;
}

}  // namespace smime::testing
