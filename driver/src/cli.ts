console.log('spire-csi-driver');
