// Verifies a Standard Webhooks delivery with the reference library.
// Input (stdin): {"secret": "whsec_...", "payload": "<body>", "headers": {...}}
// Exit 0 and print "ok" when valid; exit 1 with the library's error otherwise.
const { Webhook } = require('standardwebhooks');

let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const { secret, payload, headers } = JSON.parse(input);
  try {
    new Webhook(secret).verify(payload, headers);
    console.log('ok');
  } catch (e) {
    console.log('invalid: ' + e.message);
    process.exit(1);
  }
});
