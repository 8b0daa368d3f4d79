module.exports = function Bull() {
  throw new Error('bull is stubbed out in tests/server/clients (no Redis queue in these tests)');
};
